"""The `fer-bench` command. Heavy libraries (torch, timm) are imported inside the handlers only."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path

from fer_bench.errors import FerBenchError
from fer_bench.tracking import KIND_TAG

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


def _int_list(value: str) -> list[int]:
    return [int(x) for x in _csv_list(value)]


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer-bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_ls(sub)
    _add_validate(sub)
    _add_leaderboard(sub)
    _add_bench(sub)
    _add_data(sub)
    _add_tune(sub)
    return parser


def _add_data_args(p: argparse.ArgumentParser, default: str | None = "synthetic") -> None:
    shown = default or "synthetic, or the suite's"
    p.add_argument("--dataset", default=default, help=f"registered dataset (default: {shown})")
    p.add_argument("--data-dir", help="the dataset's folder tree or CSV file")
    p.add_argument("--cache-dir", help="where decoded datasets are cached (default: $FER_BENCH_CACHE or ~/.cache)")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate models under one protocol, then print the ranked table")
    p.add_argument("--models", type=_csv_list, help="comma-separated registry names or timm:<name>")
    p.add_argument("--suite", type=Path, metavar="FILE",
                   help="run a suite file (models × recipes × seeds × splits, e.g. benchmarks/fer2013-cpu.yaml) "
                        "instead of --models; cells already FINISHED in the tracking store are skipped")  # fmt: skip
    p.add_argument("--shard", metavar="K/N", help="with --suite: run share K of N (N machines, one MLflow store)")
    p.add_argument("--seeds", type=_int_list, metavar="S,…",
                   help="with --suite: these seeds instead of the suite's (e.g. a one-seed check)")  # fmt: skip
    p.add_argument("--recipe", help="recipe name or YAML path (default: each model's own recipe)")
    _add_data_args(p, default=None)
    p.add_argument("--epochs", type=int)
    p.add_argument("--img-size", type=int, help="input side in pixels (default: the recipe's)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--split", choices=("public", "private", "test"), help="final evaluation split (test = both)")
    p.add_argument("--limit-train", type=int, metavar="N", help="train on a stratified subset of N images")
    p.add_argument("--precision", choices=("auto", "fp32", "amp_bf16", "amp_fp16"))
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument(
        "--pretrained", action="store_true", help="start from timm's pretrained weights (needs the hub cache)"
    )
    p.add_argument("--weights", help="a local .pth/.pt/.safetensors state dict to start from")
    p.add_argument("--allow-partial-weights", action="store_true",
                   help="with --weights: accept a file that fills only part of the backbone (the row records the "
                        "fraction loaded); without it every backbone tensor must load")  # fmt: skip
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe value, e.g. --set optim.lr=0.01 (repeatable)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("runs"), help="output folder (default: runs/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines are still printed)")
    p.add_argument("--protocol", type=Path, metavar="FILE",
                   help="a leakage-free protocol from `fer-bench data check --write-protocol`")  # fmt: skip
    p.add_argument(
        "--resume", action="store_true", help="continue each model from its last checkpoint under --out (same options)"
    )
    _add_tracking(p)
    p.set_defaults(handler=cmd_run)


def _add_tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="fer-bench", help="MLflow experiment name (default: fer-bench)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument("--log-checkpoint", action="store_true", help="also log the best checkpoint (best.pt) to MLflow")


def make_tracker(args: argparse.Namespace):
    from fer_bench.tracking import MlflowTracker, NullTracker

    return NullTracker() if args.no_track else MlflowTracker(args.tracking_uri, args.experiment, args.log_checkpoint)


def _add_ls(sub) -> None:
    p = sub.add_parser("ls", help="list registered models, recipes or datasets")
    p.add_argument("what", choices=("models", "recipes", "datasets"))
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.set_defaults(handler=cmd_ls)


def _add_validate(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="check recipes, suites, search spaces and reference rows: unknown keys, types, ranges, choices",
        description="Tell each YAML file's kind (by content, else by location) and load it as its command would: "
        "a recipe as `fer-bench run --recipe` (includes resolved, every key, type and range checked), a suite "
        "(`models:`) as `fer-bench run --suite` (every cell's recipe resolved), a search space (`params:`) as "
        "`fer-bench tune --search` (every path, bound and choice checked against the recipe schema), reference "
        "rows (a list: published.yaml) as `fer-bench leaderboard --published`. Prints the kind and the first "
        "problem of each file.",
    )
    p.add_argument("paths", nargs="*", type=Path,
                   help="YAML files or folders (default: the shipped configs)")  # fmt: skip
    p.set_defaults(handler=cmd_validate)


def _add_leaderboard(sub) -> None:
    p = sub.add_parser("leaderboard", help="rank the tracked runs: mean ± std over seeds, as a table and a plot")
    p.add_argument("--experiment", default="fer-bench", help="MLflow experiment (default: fer-bench)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--filter", default="", help="extra MLflow filter, e.g. \"tags.`fer_bench.split` = 'public'\"")
    p.add_argument("--from-results", nargs="+", type=Path, metavar="DIR",
                   help="read result.json files instead of MLflow")  # fmt: skip
    p.add_argument("--format", choices=("md", "csv", "latex", "html"), default="md")
    p.add_argument("--per-class", action="store_true", help="add per-class F1 columns")
    p.add_argument("--published", action="store_true", help="add the papers' published numbers as rows")
    p.add_argument("--out", type=Path, help="write the table here (default: print it)")
    p.add_argument("--plot", type=Path, help="write the Pareto plot (macro-F1 vs img/s) as PNG here")
    p.set_defaults(handler=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from fer_bench import leaderboard as lb

    if args.from_results:
        frame = lb.frame_from_rows(lb.read_rows(args.from_results))
    else:
        from fer_bench.tracking import search_bench_runs, search_model_runs

        frame = lb.frame_from_mlflow(search_model_runs(args.tracking_uri, args.experiment, args.filter))
        frame = lb.apply_bench(frame, search_bench_runs(args.tracking_uri, args.experiment))
    if frame.empty:
        raise FerBenchError(
            f"no finished model runs in experiment {args.experiment!r}"
            f"{' matching ' + repr(args.filter) if args.filter else ''}. Run `fer-bench run` first."
        )
    agg = lb.aggregate(frame)
    table = lb.render(agg, args.format, per_class=args.per_class, published=args.published)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table if table.endswith("\n") else table + "\n")
    else:
        print(table)
    if args.plot:
        lb.pareto_plot(agg, args.plot)
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure throughput, latency, memory and cost (or the data path with --data)")
    p.add_argument("--models", type=_csv_list, default=["resnet18"], help="comma-separated models")
    p.add_argument("--img-size", type=_int_list, default=[48],
                   help="comma-separated input sizes, e.g. 48,224")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", choices=("fp32", "amp_bf16", "amp_fp16"), default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile the model (mode: default, reduce-overhead, max-autotune)")  # fmt: skip
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (>= 5 for a meaningful IQR)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--data", action="store_true", help="benchmark the data path instead (fast-data figures)")
    p.add_argument("--data-dir", type=Path, help="FER2013 folder tree or CSV (default: the synthetic set)")
    p.add_argument("--dataset", default=None,
                   help="dataset feeding the end-to-end training figures (default: fer2013 with --data-dir, else "
                        "synthetic); 'none' skips them")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("results/bench"), help="output folder for the CSV/JSON files")
    _add_tracking(p)
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    if args.data:
        from fer_bench.bench_data import run_data_bench

        result = run_data_bench(args.data_dir, args.out)
        path = args.out / "data-bench-cpu.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "conditions"}, indent=2))
        print(f"written: {path}", file=sys.stderr)
        return 0
    return _bench_models(args)


def _bench_models(args: argparse.Namespace) -> int:
    import pandas as pd
    from tabulate import tabulate

    from fer_bench.bench import BenchConfig, csv_name, run_isolated
    from fer_bench.models import get_spec

    for m in args.models:
        get_spec(m)  # unknown names fail before any measuring
    rows, cfg = [], None
    for model in args.models:
        for size in args.img_size:
            dataset = args.dataset or ("fer2013" if args.data_dir else "synthetic")
            cfg = BenchConfig(model, size, args.batch_size, args.precision, args.channels_last, args.compile,
                              args.device, repeats=args.repeats, steps=args.steps,
                              dataset=None if dataset == "none" else dataset,
                              data_dir=str(args.data_dir) if args.data_dir else None)  # fmt: skip
            print(f"bench {model} @ {size}px, batch {args.batch_size}, {args.precision}", file=sys.stderr)
            rows.append(run_isolated(cfg))
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    ok = df[df.get("error").isna()] if "error" in df else df
    if ok.empty:
        raise FerBenchError(f"every measurement failed; first error: {rows[0].get('error')}")
    common = [c for c in ("model", "img_size", "batch_size", "batch_size_requested", "precision", "channels_last",
                          "compile", "device_name", "torch", "cuda", "cudnn", "threads", "params", "gmacs")
              if c in df]  # fmt: skip
    infer = common + [c for c in df if c.startswith(("infer_", "latency_"))] + ["git_sha", "timestamp"]
    train = (
        common + [c for c in df if c.startswith(("train_", "e2e_", "peak_mem"))] + ["dataset", "git_sha", "timestamp"]
    )
    for mode, cols in (("infer", infer), ("train", train)):
        path = args.out / csv_name(mode, cfg, ok.iloc[0].to_dict())
        ok[[c for c in cols if c in ok]].to_csv(path, index=False, float_format="%.4g")
        print(f"written: {path}", file=sys.stderr)
    show = ["model", "img_size", "batch_size", "infer_img_s_median", "infer_img_s_iqr", "latency_ms_median",
            "train_img_s_median", "train_img_s_iqr", "e2e_train_img_s_median", "e2e_over_model_only", "peak_mem_mb",
            "params", "gmacs"]  # fmt: skip
    print(tabulate(ok[[c for c in show if c in ok]].values.tolist(), headers=show, floatfmt=".1f"))
    if not args.no_track:
        from fer_bench.tracking import log_bench_rows

        log_bench_rows(args.tracking_uri, args.experiment, ok.to_dict("records"))
    failed = df[df["error"].notna()] if "error" in df else df.iloc[0:0]
    for _, r in failed.iterrows():
        print(f"failed: {r['model']} @ {r['img_size']}: {r['error']}", file=sys.stderr)
    return 0


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="inspect a dataset")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    c = dsub.add_parser("check", help="load a dataset and audit it: counts, duplicates, leakage, label conflicts")
    _add_data_args(c, default="fer2013")
    c.add_argument("--json", type=Path, help="also write the full report (with every listed file) as JSON here")
    c.add_argument("--write-protocol", type=Path, metavar="FILE",
                   help="write a leakage-free protocol (drop test images with an identical training copy); "
                        "use it with `fer-bench run --protocol FILE`")  # fmt: skip
    c.set_defaults(handler=cmd_data_check)


def cmd_data_check(args: argparse.Namespace) -> int:
    import json

    from tabulate import tabulate

    from fer_bench.data import load_dataset
    from fer_bench.data.audit import audit, describe, write_protocol

    data = load_dataset(args.dataset, args.data_dir, args.cache_dir)
    result = audit(data)
    print(f"{data.name}: {data.source}")
    for note in data.notes:
        print(f"note: {note}")
    splits = list(result.counts)
    table = [[c] + [result.counts[s][c] for s in splits] for c in data.classes]
    table.append(["total"] + [sum(result.counts[s].values()) for s in splits])
    print(tabulate(table, headers=["class", *splits], tablefmt="github"))
    print()
    for key, value in result.summary().items():
        print(f"{key.replace('_', ' ')}: {value}")
    for title, idx in (
        ("blank images", result.blank),
        ("conflicting-label groups (first 5)", result.conflicting_groups[:5]),
    ):
        print(f"\n{title}:")
        for item in idx:
            print(
                "  " + (" = ".join(describe(data, i) for i in item) if isinstance(item, list) else describe(data, item))
            )
    if args.json:
        report = result.summary() | {"counts": result.counts,
                                     "blank": [describe(data, i) for i in result.blank],
                                     "leaked_test": [describe(data, i) for i in result.leaked_test],
                                     "conflicting_groups": [[describe(data, i) for i in g]
                                                            for g in result.conflicting_groups]}  # fmt: skip
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.write_protocol:
        proto = write_protocol(data, result, args.write_protocol)
        print(f"\nprotocol {proto['name']!r}: drops {proto['n_dropped_images']} test images → {args.write_protocol}")
    return 0


def _add_tune(sub) -> None:
    p = sub.add_parser("tune", help="Optuna search over recipe values (loss weighting, augmentation strength...)")
    p.add_argument("--search", type=Path, required=True, help="search space YAML, e.g. configs/search/loss-aug.yaml")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--recipe", default="baseline", help="base recipe the search starts from")
    _add_data_args(p)
    p.add_argument("--trials", type=int, default=10, help="trials to add to the study (re-running resumes it)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--img-size", type=int)
    p.add_argument("--limit-train", type=int, metavar="N")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--storage", help="journal file path (default: OUT/study.journal) or postgresql://… for many hosts")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the storage")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--out", type=Path, default=Path("runs/tune"))
    p.add_argument("--report", action="store_true", help="print the best trials and importances, save plots")
    p.add_argument("--final-seeds", type=_int_list, metavar="S,…",
                   help="then train the best and the base recipe with each seed on the same budget and compare "
                        "them on the test split (OUT/final.md)")  # fmt: skip
    _add_tracking(p)
    p.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    import json

    from fer_bench.tune import TuneJob, final_compare, report, tune

    sets = [
        f"{path}={getattr(args, flag)}"
        for flag, path in RUN_OVERRIDES.items()
        if flag != "seed" and getattr(args, flag, None) is not None
    ]  # fmt: skip (--seed seeds the sampler)
    experiment = args.experiment if args.experiment != "fer-bench" else "fer-bench-tune"
    job = TuneJob(args.search, args.recipe, args.model, args.dataset, args.data_dir, tuple(args.sets + sets),
                  args.out, args.storage, args.trials, args.seed, args.tracking_uri, experiment,
                  not args.no_track, args.cache_dir)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        print(json.dumps(tune(job, args.workers), indent=2))
    print(report(job))
    if args.final_seeds:
        print("\n" + final_compare(job, args.final_seeds))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if bool(args.models) == bool(args.suite):
        raise FerBenchError("give either --models a,b,… or --suite FILE (one of them). See `fer-bench run --help`.")
    if args.suite:
        return _run_suite(args)
    if args.shard or args.seeds:
        raise FerBenchError("--shard and --seeds apply to a suite: use them with --suite FILE (else --seed N).")
    args.dataset = args.dataset or "synthetic"
    from fer_bench.data import load_dataset
    from fer_bench.leaderboard import render_rows
    from fer_bench.models import get_spec
    from fer_bench.provenance import git_sha
    from fer_bench.recipes import recipe_to_dict
    from fer_bench.runner import RunOptions, run_model

    specs = [get_spec(m) for m in args.models]  # fail on a bad name before any loading
    git_sha()  # NOTE: read once, up front: the row must name the code that started the run
    recipes = [_recipe_for(args, spec) for spec in specs]
    data = load_dataset(args.dataset, args.data_dir, args.cache_dir)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    protocol = None
    if args.protocol:
        from fer_bench.data.audit import load_protocol

        protocol = load_protocol(args.protocol)
    opts = RunOptions(out=args.out, device=args.device, weights=args.weights, progress=not args.no_progress,
                      resume=args.resume, protocol=protocol,
                      allow_partial_weights=args.allow_partial_weights)  # fmt: skip
    tracker = make_tracker(args)
    rows = []
    with tracker.run(f"run-{'+'.join(s.name for s in specs)}", tags={KIND_TAG: "suite"}):
        for spec, recipe in zip(specs, recipes, strict=True):
            print(f"== {spec.name} · recipe {recipe.name} · {data.name} ({data.source})", file=sys.stderr)
            # tagged as a model run from its start, so that a killed or running one is found as such too
            with tracker.run(f"{spec.name}-{recipe.name}-s{recipe.train.seed}", nested=True, tags={KIND_TAG: "model"}):
                row = run_model(spec.name, recipe, data, opts, on_epoch=tracker.log_epoch)
                tracker.log_result(row, args.out / row["run_id"], recipe_to_dict(recipe))
            rows.append(row)
    table = render_rows(rows)
    (args.out / "leaderboard.md").write_text(table + "\n")
    print(table)
    print(f"\nrows and recipes: {args.out}/*/result.json · table: {args.out}/leaderboard.md", file=sys.stderr)
    return 0


def _run_suite(args: argparse.Namespace) -> int:
    from fer_bench import suite as st
    from fer_bench.data import load_dataset
    from fer_bench.provenance import git_sha
    from fer_bench.runner import RunOptions

    suite = st.load_suite(args.suite)
    if args.seeds:
        suite = dataclasses.replace(suite, seeds=tuple(args.seeds))
    if args.recipe or args.pretrained or args.weights:
        raise FerBenchError("--recipe/--pretrained/--weights do not apply to a suite: each line of the suite names its "
                            "recipe; add overrides with --set KEY=VALUE.")  # fmt: skip
    k, n = st.parse_shard(args.shard)
    sets = [f"{path}={getattr(args, flag)}" for flag, path in RUN_OVERRIDES.items()
            if flag not in ("seed", "split") and getattr(args, flag) is not None]  # fmt: skip
    if args.seed is not None or args.split is not None:
        raise FerBenchError("--seed/--split do not apply to a suite: it lists its seeds and splits.")
    all_cells = st.cells(suite, list(args.sets) + sets, str(args.suite))
    cells = st.shard(all_cells, k, n)
    git_sha()
    data = load_dataset(args.dataset or suite.dataset, args.data_dir or suite.data_dir, args.cache_dir)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    protocol = None
    if args.protocol:
        from fer_bench.data.audit import load_protocol

        protocol = load_protocol(args.protocol)
    out = args.out if args.out != Path("runs") else Path("runs") / suite.name
    opts = RunOptions(out=out, device=args.device, progress=not args.no_progress, protocol=protocol)
    experiment = args.experiment if args.experiment != "fer-bench" else suite.experiment or suite.name
    args.experiment = experiment
    tracker = make_tracker(args)
    proto_name = protocol["name"] if protocol else "standard"
    from fer_bench.runner import run_protocol

    hashes = {c.id: run_protocol(c.model, c.recipe, data, opts)[0] for c in all_cells}
    protocol_of = lambda cell: hashes[cell.id]  # noqa: E731

    def on_disk(cell, split) -> bool:
        return st.finished_on_disk(st.result_file(out, cell, split, data, hashes[cell.id], proto_name), hashes[cell.id])

    if tracker.enabled:
        from fer_bench.tracking import finished_suite_rows

        done = finished_suite_rows(args.tracking_uri, experiment, suite.name)
        finished = lambda cell, split: (cell.id, split, hashes[cell.id]) in done  # noqa: E731
    else:
        finished = on_disk
    job = st.SuiteRun(suite, cells, data, opts, tracker, finished, protocol_of)
    tags = {KIND_TAG: "suite", st.SUITE_TAG: suite.name, "fer_bench.shard": f"{k}/{n}"}
    with tracker.run(f"suite-{suite.name}-{k}of{n}", tags=tags):
        st.run_suite(job)
    # The table covers every shard's rows: from the tracking store, or from the result files on this machine.
    from fer_bench import leaderboard as lb

    if tracker.enabled:
        from fer_bench.tracking import search_bench_runs, search_model_runs

        frame = lb.frame_from_mlflow(search_model_runs(args.tracking_uri, experiment,
                                                       f"tags.`{st.SUITE_TAG}` = '{suite.name}'"))  # fmt: skip
        frame = lb.apply_bench(frame, search_bench_runs(args.tracking_uri, experiment))
    else:
        files = [st.result_file(out, c, s, data, hashes[c.id], proto_name) for c in all_cells for s in c.splits]
        frame = lb.frame_from_rows(lb.read_rows([f for f in files if f.is_file()]))
    if not frame.empty:  # this suite's protocols only: a smoke run of a cell is not part of its table
        frame = frame[frame["protocol_hash"].isin(set(hashes.values()))]
    out.mkdir(parents=True, exist_ok=True)
    written = st.render_leaderboard(job, frame, out)
    print(lb.render(lb.aggregate(frame), "md", per_class=False, published=suite.leaderboard.published))
    print(f"\nleaderboard: {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def _recipe_for(args: argparse.Namespace, spec):
    from fer_bench.recipes import default_recipe, load_recipe

    name = args.recipe or default_recipe(spec)
    sets = [f"{path}={getattr(args, flag)}" for flag, path in RUN_OVERRIDES.items() if getattr(args, flag) is not None]
    if args.pretrained:
        sets.append("input.pretrained=true")
    recipe = load_recipe(name, list(args.sets) + sets)
    from fer_bench.errors import ConfigError
    from fer_bench.recipes.checks import frozen_without_weights

    if reason := frozen_without_weights(recipe, has_weights=recipe.input.pretrained or args.weights is not None):
        raise ConfigError(f"--models {spec.name}: {reason}")  # before the dataset loads
    return recipe


def cmd_ls(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    if args.what == "models":
        from fer_bench.models import MODELS

        rows = [(s.name, s.source, s.family, s.input_size, s.in_chans, f"{s.params / 1e6:.2f}", s.default_recipe,
                 s.paper) for s in map(MODELS.get, MODELS.names(args.pattern))]  # fmt: skip
        headers = ["model", "source", "family", "input", "chans", "params (M, 7 classes)", "recipe", "paper"]
        print(tabulate(rows, headers=headers))
        print("\nAny timm architecture also works as timm:<name>, e.g. --models timm:convnext_atto.")
    elif args.what == "recipes":
        from fer_bench.recipes import RECIPE_DIR, list_recipes, load_recipe

        rows = [(n, (r := load_recipe(n)).version, r.description) for n in list_recipes()]
        print(tabulate(rows, headers=["recipe", "version", "description"]))
        print(f"\n(from {RECIPE_DIR})")
    else:
        from fer_bench.data import DATASETS

        print(tabulate([(n, DATASETS.get(n).description) for n in DATASETS.names(args.pattern)],
                       headers=["dataset", "description"]))  # fmt: skip
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from fer_bench.recipes import RECIPE_DIR

    files: list[Path] = []
    for p in args.paths or [RECIPE_DIR.parent]:
        files += sorted([*p.rglob("*.yaml"), *p.rglob("*.yml")]) if p.is_dir() else [p]
    checkers = _validators()
    failed = 0
    for f in files:
        kind = _file_kind(f)
        try:
            loaded = checkers[kind](f)
            print(f"ok      {kind:<14} {f}")
            _note_needs_weights(loaded, f)
        except FerBenchError as exc:
            failed += 1
            msg = str(exc)
            for shown in (f"{f}: ", f"{f.resolve()}: "):  # the file leads the line once, not twice
                msg = msg.removeprefix(shown)
            print(f"INVALID {kind:<14} {f}: {msg}")
    print(f"{len(files) - failed} valid, {failed} invalid")
    return 2 if failed else 0


def _note_needs_weights(loaded: object, path: Path) -> None:
    """A recipe that freezes part of the model is valid, but runs only with loaded weights: say so (issue 13)."""
    from fer_bench.recipes.checks import frozen_without_weights, scratch_variant
    from fer_bench.recipes.schema import Recipe

    if isinstance(loaded, Recipe) and frozen_without_weights(loaded, has_weights=loaded.input.pretrained):
        alt = f"; from scratch: --recipe {v}" if (v := scratch_variant(loaded)) else ""
        print(f"info    {'':<14} {path}: needs --pretrained or --weights (it freezes part of the model{alt})")


def _validators() -> dict[str, Callable[[Path], object]]:
    """Each kind of file `validate` knows, checked by the loader that `run`, `tune` or `leaderboard` uses."""
    from fer_bench.published import load_published
    from fer_bench.recipes import load_recipe
    from fer_bench.suite import load_suite
    from fer_bench.tune import read_space

    return {"recipe": lambda f: load_recipe(str(f)), "suite": load_suite, "search space": read_space,
            "reference rows": load_published}  # fmt: skip


def _file_kind(path: Path) -> str:
    """What a YAML file is, by content: a list is reference rows, `models:` makes a suite, `params:` a search space.
    Content that says none of these falls back to where the file lies (a ``search/`` folder, ``benchmarks/``,
    ``published*.yaml``), so a broken search space is reported as one; anything else is a recipe."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        data = None  # the kind's own loader reports it
    if isinstance(data, list):
        return "reference rows"
    for key, kind in (("models", "suite"), ("params", "search space")):
        if isinstance(data, dict) and key in data:
            return kind
    if path.name.startswith("published"):
        return "reference rows"
    return {"search": "search space", "benchmarks": "suite"}.get(path.parent.name, "recipe")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
