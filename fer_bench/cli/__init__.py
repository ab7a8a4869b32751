"""The `fer-bench` command. Heavy libraries (torch, timm) are imported inside the handlers only.

One module per subcommand (issue 17); each has ``add_parser(sub)``, which registers the subcommand and its
handler. Shared flags and helpers live in :mod:`fer_bench.cli.common`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from fer_bench.cli import bench, compare, data, eval, leaderboard, ls, run, tune, validate
from fer_bench.cli.common import RUN_OVERRIDES, OneLineParser, make_tracker
from fer_bench.cli.run import _recipe_for
from fer_bench.errors import FerBenchError

__all__ = ["RUN_OVERRIDES", "_recipe_for", "build_parser", "main", "make_tracker"]

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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fer-bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `run --jobs` starts each cell with the same options
    handler: Callable[[argparse.Namespace], int] = args.handler
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
