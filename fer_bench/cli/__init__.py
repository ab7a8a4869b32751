"""The `fer-bench` command. Heavy libraries (torch, timm) are imported inside the handlers only.

One module per subcommand; each has ``add_parser(sub)``, which registers the subcommand and its
handler. Shared flags and helpers live in :mod:`fer_bench.cli.common`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed

from fer_bench.cli import bench, compare, data, eval, leaderboard, ls, run, tune, validate
from fer_bench.cli.common import RUN_OVERRIDES, OneLineParser, make_tracker
from fer_bench.cli.run import recipe_from_args
from fer_bench.utils.console import quiet_libraries
from fer_bench.utils.errors import FerBenchError

__all__ = ["RUN_OVERRIDES", "recipe_from_args", "build_parser", "main", "make_tracker"]

# The subcommands in the order `fer-bench --help` lists them.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    run.add_parser,
    eval.add_parser,
    ls.add_parser,
    validate.add_parser,
    leaderboard.add_parser,
    compare.add_parser,
    bench.add_parser,
    data.add_parser,
    tune.add_parser,
)


DESCRIPTION = (
    "Train, measure and rank facial-emotion-recognition backbones under one protocol. `fer-bench run --models "
    "simple_cnn` trains on a built-in synthetic set and prints a ranked table (top-1, macro-F1 with confidence "
    "intervals, parameters, speed); add --dataset fer2013 --data-dir DIR for FER2013. `fer-bench ls models` lists "
    "the backbones; `fer-bench COMMAND --help` explains each command."
)


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default where its text does not say it already (flags are off by default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        value = action.default
        if (
            action.option_strings
            and not action.required
            and "default:" not in text
            and not (value is None or value is False or value == argparse.SUPPRESS)
        ):
            shown = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            shown = shown or "none"  # an empty default ("" or []) reads "none", never "(default: )"
            text += f" (default: {shown})".replace("%", "%%")
        return text


class Parser(OneLineParser):
    """One-line errors (exit 2) and help that shows defaults; subcommands get the same class."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def version() -> str:
    """The installed distribution's version, else the source tree's."""

    try:
        return installed("fer-bench")
    except PackageNotFoundError:
        from fer_bench.utils.version import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fer-bench", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--verbose", action="store_true", help="also show the INFO lines of libraries (MLflow, …)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `run --jobs` starts each cell with the same options
    handler: Callable[[argparse.Namespace], int] = args.handler
    quiet_libraries(verbose=args.debug or args.verbose)
    try:
        return handler(args)
    except FerBenchError as exc:
        if args.debug or os.environ.get("FER_BENCH_DEBUG"):
            raise
        print(f"fer-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fer-bench: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a path the checks could not foresee (a name too long, a full disk): one line, no trace
        if args.debug or os.environ.get("FER_BENCH_DEBUG") or exc.filename is None:
            raise
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
        print(f"fer-bench: error: {where[:200]}: {exc.strerror or exc}. Check the path and its folder; "
              "FER_BENCH_DEBUG=1 shows where it failed.", file=sys.stderr)  # fmt: skip
        return 2
