"""`fer-bench run`: train and evaluate models (--models) or a suite file (--suite), then print the table."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fer_bench.cli.common import (
    RUN_OVERRIDES,
    SEED,
    add_data_args,
    add_tracking,
    csv_list,
    device,
    existing_file,
    flag_sets,
    list_of,
    make_tracker,
    out_dir,
)  # fmt: skip
from fer_bench.recipes.schema import EVAL_SPLITS, PRECISIONS
from fer_bench.utils.console import wrap_notes
from fer_bench.utils.errors import FerBenchError


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate models under one protocol, then print the ranked table")
    p.add_argument(
        "--models",
        "--model",
        type=csv_list,
        help="comma-separated registry names or timm:<name> (default: none; this or --suite)",
    )
    p.add_argument("--suite", type=existing_file, metavar="FILE",
                   help="run a suite file (models × recipes × seeds × splits, e.g. benchmarks/fer2013-cpu.yaml) "
                        "instead of --models; cells already FINISHED in the tracking store are skipped (default: "
                        "none)")  # fmt: skip
    p.add_argument("--shard", metavar="K/N|auto",
                   help="with --suite: run share K of N (N machines, one MLflow store); auto: this SLURM array "
                        "task's share, from SLURM_ARRAY_TASK_ID/COUNT/MIN/MAX/STEP (default: every cell)")  # fmt: skip
    p.add_argument("--jobs", metavar="N",
                   help="with --suite: run N cells at once, each in its own process; a failed cell fails alone "
                        "(default: 1, one after another, in this process)")  # fmt: skip
    p.add_argument("--gpus", metavar="I,…",
                   help="with --suite: the GPUs the jobs take in turn (CUDA_VISIBLE_DEVICES ids; default: every "
                        "visible one; more jobs than GPUs share them)")  # fmt: skip
    p.add_argument("--pilot", action="store_true",
                   help="with --suite: train each line 2 epochs (first seed, no test) and write the suite's pilots "
                        "file, the epoch timings its budget_s divides")  # fmt: skip
    p.add_argument("--unblind", action="store_true",
                   help="with a blind suite (blind: true): once every cell has its validation row, score the test "
                        "splits and write the rows and tables")  # fmt: skip
    p.add_argument("--worker-cell", help=argparse.SUPPRESS)  # --jobs: one cell, in a process of its own
    p.add_argument("--parent-run", help=argparse.SUPPRESS)  # --jobs: the suite's MLflow run the cell's rows go under
    p.add_argument("--seeds", type=list_of(SEED), metavar="S,…",
                   help="train each model once per seed (a row, run folder and MLflow child each); with --suite: "
                        "these seeds instead of the suite's (e.g. a one-seed check; default: the recipe's or "
                        "suite's)")  # fmt: skip
    p.add_argument("--recipe", help="recipe name or YAML path (default: each model's own recipe)")
    add_data_args(p, default=None)
    p.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    p.add_argument("--img-size", type=int, help="input side in pixels (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: the recipe's)")
    p.add_argument("--seed", type=int, help="training seed (default: the recipe's, 0 in the shipped ones)")
    p.add_argument("--lr", type=float, help="learning rate, = --set optim.lr=LR (default: the recipe's)")
    p.add_argument("--split", choices=EVAL_SPLITS, help="final evaluation split (test = both; default: the recipe's)")
    p.add_argument(
        "--limit-train", type=int, metavar="N", help="train on a stratified subset of N images (default: all)"
    )
    p.add_argument("--precision", choices=PRECISIONS, help="numeric precision (default: the recipe's)")
    p.add_argument("--device", type=device, default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun: batch norms over the global batch (SyncBatchNorm; = --set train.sync_bn=true)",
    )
    p.add_argument(
        "--pretrained", action="store_true", help="start from timm's pretrained weights (needs the hub cache)"
    )
    p.add_argument("--weights", help="a local .pth/.pt/.safetensors state dict to start from (default: none)")
    p.add_argument("--allow-partial-weights", action="store_true",
                   help="with --weights: accept a file that fills only part of the backbone (the row records the "
                        "fraction loaded); without it every backbone tensor must load")  # fmt: skip
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe value, e.g. --set optim.lr=0.01 (repeatable)")  # fmt: skip
    p.add_argument("--out", type=out_dir, default=Path("runs"), help="output folder (default: runs/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines are still printed)")
    p.add_argument("--protocol", type=existing_file, metavar="FILE",
                   help="a leakage-free protocol from `fer-bench data check --write-protocol` (default: the "
                        "standard splits)")  # fmt: skip
    p.add_argument(
        "--resume", action="store_true", help="continue each model from its last checkpoint under --out (same options)"
    )
    add_tracking(p)
    p.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    if bool(args.models) == bool(args.suite):
        raise FerBenchError("give either --models a,b,… or --suite FILE (one of them). See `fer-bench run --help`.")
    if args.suite:
        from fer_bench.engine.distributed import from_env

        if from_env().active:
            raise FerBenchError("torchrun trains one run data-parallel (--models); a suite spreads its cells over "
                                "GPUs and hosts with --jobs and --shard instead.")  # fmt: skip
        return _run_suite(args)
    if args.jobs or args.gpus:
        raise FerBenchError("--jobs and --gpus apply to a suite: use them with --suite FILE.")
    if args.shard:
        raise FerBenchError("--shard applies to a suite: use it with --suite FILE.")
    if args.pilot or args.unblind:
        raise FerBenchError("--pilot and --unblind apply to a suite: use them with --suite FILE.")
    seeds = _seeds(args)
    args.dataset = args.dataset or "synthetic"
    from fer_bench.engine import distributed

    world, device = distributed.setup(args.device)  # under torchrun: join the job, this rank's device
    try:
        code = _run_models(args, seeds, world, device)
    except BaseException:  # no barrier: the other ranks may wait in a collective this one never reaches
        distributed.teardown(world, wait=False)
        raise
    distributed.teardown(world)
    if world.active and not world.main:
        # A worker rank has written nothing and has nothing left to do. Leave now: under load a worker can abort in a
        # C++ destructor at interpreter exit ("terminate called without an active exception") after its run has
        # finished, which fails the whole torchrun job.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run_models(args: argparse.Namespace, seeds: list[int | None], world, device: str) -> int:
    from fer_bench import api

    sets, origins = _sets(args)
    made = []  # the MLflow tracker, made once the checks pass (bad input creates no store); rank 0 alone tracks

    def tracker():
        made.append(make_tracker(args))
        return made[0]

    rows = api.run(args.models, recipe=args.recipe, sets=sets, origins=origins,
                   seeds=None if seeds == [None] else seeds, dataset=args.dataset, data_dir=args.data_dir,
                   cache_dir=args.cache_dir, out=args.out, device=device, weights=args.weights,
                   pretrained=args.pretrained, allow_partial_weights=args.allow_partial_weights,
                   protocol=args.protocol, resume=args.resume, progress=not args.no_progress,
                   tracker=tracker if world.main else None, world=world)  # fmt: skip
    if not world.main or not rows:
        return 0
    print(wrap_notes((args.out / "leaderboard.md").read_text().rstrip("\n")))
    print(f"\nrows and recipes: {args.out}/*/result.json · table: {args.out}/leaderboard.md", file=sys.stderr)
    if made and (url := made[0].runs_url()):
        print(f"runs in MLflow: {url}", file=sys.stderr)
    return 0


def _run_suite(args: argparse.Namespace) -> int:
    from fer_bench import api

    if args.recipe or args.pretrained or args.weights:
        raise FerBenchError("--recipe/--pretrained/--weights do not apply to a suite: each line of the suite names its "
                            "recipe; add overrides with --set KEY=VALUE.")  # fmt: skip
    if args.seed is not None or args.split is not None:
        raise FerBenchError("--seed/--split do not apply to a suite: it lists its seeds and splits.")
    sets = [f"{path}={getattr(args, flag)}" for flag, path in RUN_OVERRIDES.items()
            if flag not in ("seed", "split") and getattr(args, flag) is not None]  # fmt: skip

    def tracker(experiment: str):
        return make_tracker(argparse.Namespace(**{**vars(args), "experiment": experiment}))

    result = api.run_suite(args.suite, sets=[*args.sets, *sets], seeds=args.seeds, dataset=args.dataset,
                           data_dir=args.data_dir, cache_dir=args.cache_dir,
                           out=None if args.out == Path("runs") else args.out, device=args.device,
                           protocol=args.protocol, shard=args.shard, jobs=args.jobs, gpus=args.gpus, pilot=args.pilot,
                           unblind=args.unblind, progress=not args.no_progress, tracker=tracker,
                           experiment=None if args.experiment == "fer-bench" else args.experiment,
                           worker_cell=args.worker_cell, parent_run=args.parent_run, argv=args.argv)  # fmt: skip
    if result.said:
        print(result.said, file=sys.stderr)
    if result.table:
        print(wrap_notes(result.table))
        print(f"\nleaderboard: {', '.join(str(p) for p in result.written)}", file=sys.stderr)
    if result.runs_url:
        print(f"runs in MLflow: {result.runs_url}", file=sys.stderr)
    if result.failed is not None:
        raise result.failed
    return 0


def _seeds(args: argparse.Namespace) -> list[int | None]:
    """The seeds of a --models run: --seeds S,… (each model once per seed), else the one of --seed or the recipe."""
    if not args.seeds:
        return [None]
    if args.seed is not None:
        raise FerBenchError(f"--seed {args.seed} and --seeds {','.join(map(str, args.seeds))} together: give one "
                            "(--seeds trains each model once per seed).")  # fmt: skip
    if len(set(args.seeds)) != len(args.seeds):
        raise FerBenchError(f"--seeds {','.join(map(str, args.seeds))} repeats a seed; list each seed once.")
    return list(args.seeds)


def _sets(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The recipe overrides the flags make (--set first, then --epochs, --lr, …, --sync-bn) and how each was spelt."""
    sets, origins = flag_sets(args)
    if getattr(args, "sync_bn", False):
        sets.append("train.sync_bn=true")
    return [*args.sets, *sets], origins


def recipe_from_args(args: argparse.Namespace, spec, seed: int | None = None):
    """The recipe `fer-bench run --models` resolves for ``spec`` from the parsed flags."""
    from fer_bench import api

    sets, origins = _sets(args)
    return api.recipe_for(spec.name, args.recipe, sets, origins, seed, args.pretrained,
                          args.pretrained or args.weights is not None)  # fmt: skip
