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
    p.add_argument("--data-dir", help="the dataset's folder tree or CSV file (default: none; synthetic needs none)")
    p.add_argument("--cache-dir", help="where decoded datasets are cached (default: $FER_BENCH_CACHE or ~/.cache)")


def add_tracking(p: argparse.ArgumentParser, checkpoint: bool = True) -> None:
    """The MLflow options; ``checkpoint``: the command writes a best.pt that can be logged."""
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="fer-bench", help="MLflow experiment name (default: fer-bench)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    if checkpoint:
        p.add_argument("--log-checkpoint", action="store_true", help="also log the best checkpoint (best.pt) to MLflow")


def make_tracker(args: argparse.Namespace):
    from fer_bench.tracking import MlflowTracker, NullTracker

    logged = getattr(args, "log_checkpoint", False)
    return NullTracker() if args.no_track else MlflowTracker(args.tracking_uri, args.experiment, logged)


def one_model(value: str | None, command: str) -> str | None:
    """The single model ``tune``/``eval`` take, whichever of --model/--models named it (a list is refused)."""
    from fer_bench.errors import FerBenchError

    if value is not None and "," in value:
        raise FerBenchError(f"--model {value}: `fer-bench {command}` takes one model; give one name, or use "
                            f"`fer-bench run --models {value}` to train several.")  # fmt: skip
    return value
