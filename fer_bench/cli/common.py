"""Argument helpers shared by the `fer-bench` subcommands: list types, data and tracking flags, the tracker."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fer_bench.experiment.checks import check_data_args, check_device  # noqa: F401  (the commands' names)
from fer_bench.utils.errors import FerBenchError

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


def list_of(convert: Callable[[str], Any]) -> Callable[[str], list]:
    """An argparse type: comma-separated values, each checked by ``convert`` (e.g. :func:`at_least`)."""

    def convert_all(value: str) -> list:
        return [convert(x) for x in csv_list(value)]

    return convert_all


def csv_list(value: str) -> list[str]:
    """An argparse type: comma-separated names; an empty item (``a,,b``, a trailing comma, nothing) is refused."""
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected values separated by single commas, got {value!r} "
                                         "(an empty item)")  # fmt: skip
    return items


def add_data_args(p: argparse.ArgumentParser, default: str | None = "synthetic", shown: str | None = None) -> None:
    """--dataset, --data-dir, --cache-dir; ``shown``: the help's default where ``default`` is None (decided later)."""
    shown = shown or default or "synthetic, or the suite's"
    p.add_argument("--dataset", default=default, help=f"registered dataset (default: {shown})")
    p.add_argument("--data-dir", help="the dataset's folder tree or CSV file (default: none; synthetic needs none)")
    p.add_argument("--cache-dir", type=out_dir,
                   help="where decoded datasets are cached (default: $FER_BENCH_CACHE or ~/.cache)")  # fmt: skip


def add_tracking(p: argparse.ArgumentParser, checkpoint: bool = True) -> None:
    """The MLflow options; ``checkpoint``: the command writes a best.pt that can be logged."""
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="fer-bench", help="MLflow experiment name (default: fer-bench)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    if checkpoint:
        p.add_argument("--log-checkpoint", action="store_true", help="also log the best checkpoint (best.pt) to MLflow")


def make_tracker(args: argparse.Namespace):
    from fer_bench.experiment.tracking import MlflowTracker, NullTracker

    logged = getattr(args, "log_checkpoint", False)
    return NullTracker() if args.no_track else MlflowTracker(args.tracking_uri, args.experiment, logged)


def one_model(value: str | None, command: str) -> str | None:
    """The single model ``tune``/``eval`` take, whichever of --model/--models named it (a list is refused)."""

    if value is not None and "," in value:
        raise FerBenchError(f"--model {value}: `fer-bench {command}` takes one model; give one name, or use "
                            f"`fer-bench run --models {value}` to train several.")  # fmt: skip
    return value


# ---- option checks: every value's type and range, before any work starts ----


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (what, which option, where to look), exit 2, no usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}. See `{self.prog} --help`.\n")


def at_least(low: float, kind: type = int, most: float | None = None) -> Callable[[str], Any]:
    """An argparse type: ``kind`` (int or float) in ``[low, most]``; argparse names the option in the message."""
    what = "an integer" if kind is int else "a number"
    rule = f"{what} >= {low}" if most is None else f"{what} in [{low}, {most}]"

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (most is not None and value > most):  # NaN and inf fail too
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
        return value

    convert.__name__ = kind.__name__
    return convert


SEED = at_least(0, int, 2**32 - 1)  # what numpy's seeding accepts


def device(text: str) -> str:
    """An argparse type: auto, cpu, cuda, cuda:N or mps (whether CUDA is there is checked when it is resolved)."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N, mps or auto, got {text!r}")
    return text


def existing_file(text: str) -> Path:
    """An argparse type: a path that is a file."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is {'a folder' if path.is_dir() else 'not there'}; give a file")
    return path


def file_above(path: Path) -> Path | None:
    """The first parent of ``path`` that exists and is not a folder (nothing can be made below it), or None."""
    return next((p for p in path.parents if p.exists() and not p.is_dir()), None)


def out_dir(text: str) -> Path:
    """An argparse type: an output folder (made later, when there is something to write), never an existing file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give a folder to write into (. for this one)")
    path = Path(text).expanduser()
    if any(len(part.encode()) > 255 for part in path.parts):  # before any stat: the system refuses such a name
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r}…: a name in it is longer than 255 bytes, too long for a folder"
        )
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder to write into")
    blocked = file_above(path)
    if blocked is not None:
        raise argparse.ArgumentTypeError(f"{text!r} lies under {str(blocked)!r}, a file; give a folder to write into")
    return path


def flag_sets(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str]]:
    """The recipe overrides of the RUN_OVERRIDES flags that were given, and each path's flag as the user wrote it."""
    given = {flag: getattr(args, flag, None) for flag in RUN_OVERRIDES if flag not in skip}
    given = {flag: v for flag, v in given.items() if v is not None}
    sets = [f"{RUN_OVERRIDES[flag]}={v}" for flag, v in given.items()]
    origins = {s.partition("=")[0].strip(): f"--set {s}" for s in getattr(args, "sets", None) or []}
    origins |= {RUN_OVERRIDES[flag]: f"--{flag.replace('_', '-')} {v}" for flag, v in given.items()}  # applied last
    return sets, origins
