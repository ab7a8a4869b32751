"""Argument helpers shared by the `fer-bench` subcommands: list types, data and tracking flags, the tracker."""

from __future__ import annotations

import argparse

# CLI flag → the recipe path it overrides (CLI > YAML > defaults).
RUN_OVERRIDES = {
    "epochs": "train.epochs",
    "img_size": "input.img_size",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "split": "eval.split",
    "limit_train": "data.limit_train",
    "lr": "optim.lr",
    "precision": "train.precision",
}


def int_list(value: str) -> list[int]:
    return [int(x) for x in csv_list(value)]


def csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def add_data_args(p: argparse.ArgumentParser, default: str | None = "synthetic") -> None:
    shown = default or "synthetic, or the suite's"
    p.add_argument("--dataset", default=default, help=f"registered dataset (default: {shown})")
    p.add_argument("--data-dir", help="the dataset's folder tree or CSV file")
    p.add_argument("--cache-dir", help="where decoded datasets are cached (default: $FER_BENCH_CACHE or ~/.cache)")


def add_tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="fer-bench", help="MLflow experiment name (default: fer-bench)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument("--log-checkpoint", action="store_true", help="also log the best checkpoint (best.pt) to MLflow")


def make_tracker(args: argparse.Namespace):
    from fer_bench.tracking import MlflowTracker, NullTracker

    return NullTracker() if args.no_track else MlflowTracker(args.tracking_uri, args.experiment, args.log_checkpoint)
