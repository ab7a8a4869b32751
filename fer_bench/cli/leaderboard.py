"""`fer-bench leaderboard`: rank the tracked runs (or result.json files) as a table and a plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from fer_bench.utils.errors import FerBenchError


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="rank the tracked runs: mean ± std over seeds, as a table and a plot")
    p.add_argument("--experiment", default="fer-bench", help="MLflow experiment (default: fer-bench)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--filter", default="", help="extra MLflow filter, e.g. \"tags.`fer_bench.split` = 'public'\"")
    p.add_argument("--from-results", nargs="+", type=Path, metavar="DIR",
                   help="read result.json files instead of MLflow (default: MLflow)")  # fmt: skip
    p.add_argument("--format", choices=("md", "csv", "latex", "html"), default="md", help="table format")
    p.add_argument("--columns", action="append", default=[], metavar="GROUP[,GROUP]",
                   help="column groups beside the default ones: comparison, tta, cost, calibration, robustness, "
                        "per-class, provenance, or all (CSV always has every column)")  # fmt: skip
    p.add_argument("--per-class", action="store_true", help="add per-class F1 columns (= --columns per-class)")
    p.add_argument("--published", action="store_true", help="add the papers' published numbers as rows")
    p.add_argument("--title", default="", help="a line above the tables and in the page's title, e.g. what the "
                   "comparison holds fixed (default: none)")  # fmt: skip
    p.add_argument("--out", type=Path, help="write the table here (default: print it)")
    p.add_argument("--plot", type=Path, help="write the Pareto plot (macro-F1 vs img/s) as PNG here (default: none)")
    p.add_argument("--curves", type=Path, metavar="PNG", help="write validation macro-F1 against training minutes "
                   "(one curve per line, its seeds as a band) as PNG here (default: none)")  # fmt: skip
    p.add_argument("--page", type=Path, metavar="FILE",
                   help="write the leaderboard page here: one self-contained HTML file (sortable table, conditions, "
                        "Pareto plot, per-class F1, reliability diagrams, corruption curves; default: none)"
                   )  # fmt: skip
    p.add_argument("--corruption-runs", nargs="+", type=Path, metavar="DIR",
                   help="run folders (or their parents) of `fer-bench eval --corruptions` on the ranked runs' weights: "
                        "their mCA fills the table's mCA columns and, with --page, their curves are drawn; their rows "
                        "stay out of the table (default: none)")  # fmt: skip
    p.add_argument("--bench", nargs="+", type=Path, metavar="CSV",
                   help="`fer-bench bench` CSV files (or the --out folder holding them): their medians fill the bench "
                        "columns of the lines they measured (same model, size, device, precision; default: from "
                        "MLflow, the experiment's bench runs; from --from-results, none)")  # fmt: skip
    p.add_argument("--screenshot", type=Path, metavar="PNG",
                   help="with --page: a headless-Chromium screenshot of the page's first screen (1440 × 900 px, a "
                        "laptop's window; default: none)")  # fmt: skip
    p.add_argument("--screenshot-height", type=int, default=900, metavar="PX",
                   help="the screenshot's height in pixels, 1440 wide (default: 900, the first screen; a few "
                        "thousand take the figures below the tables too)")  # fmt: skip
    p.set_defaults(handler=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from fer_bench import api

    _check_page_args(args)  # before anything is read or written
    board = api.leaderboard(args.from_results, tracking_uri=args.tracking_uri, experiment=args.experiment,
                            filter=args.filter, corruption_runs=args.corruption_runs or (), bench=args.bench or (),
                            fmt=args.format,
                            columns=args.columns, per_class=args.per_class, published=args.published,
                            title=args.title)  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(board.text if board.text.endswith("\n") else board.text + "\n")
    else:
        print(board.text)
    if args.plot:
        board.save_plot(args.plot)
    if args.curves:
        board.save_curves(args.curves)
    if args.page:
        board.write_page(args.page, args.screenshot, screenshot_height=args.screenshot_height)
    return 0


def _check_page_args(args: argparse.Namespace) -> None:
    if args.curves and not args.from_results:
        raise FerBenchError("--curves needs --from-results DIR: the per-epoch history it draws is in the result rows "
                            "(result.json), not in the MLflow runs.")  # fmt: skip
    if args.screenshot and not args.page:
        raise FerBenchError("--screenshot needs --page FILE (it is a picture of the page).")
    if not 200 <= args.screenshot_height <= 20000:
        raise FerBenchError(f"--screenshot-height {args.screenshot_height}: give 200 to 20000 pixels (900 is the "
                            "first screen).")  # fmt: skip
    if args.screenshot:
        from fer_bench.report.page import CHROMIUM, find_chromium

        if find_chromium() is None:
            looked = ", ".join(CHROMIUM)
            raise FerBenchError(f"--screenshot: no headless browser on PATH (looked for {looked}). Install Debian's "
                                "`chromium` (apt-get install chromium) or drop --screenshot.")  # fmt: skip
