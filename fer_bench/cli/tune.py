"""`fer-bench tune`: an Optuna search over recipe values (optuna is imported in fer_bench.experiment.tune only)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from fer_bench.cli.common import (
    SEED,
    add_data_args,
    add_tracking,
    at_least,
    check_data_args,
    device,
    existing_file,
    file_above,
    flag_sets,
    list_of,
    one_model,
    out_dir,
)  # fmt: skip
from fer_bench.utils.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="Optuna search over recipe values (loss weighting, augmentation strength...)")
    p.add_argument("--search", type=existing_file, required=True,
                   help="search space YAML, e.g. configs/search/loss-aug.yaml")  # fmt: skip
    p.add_argument("--model", "--models", default="resnet18", help="the one model whose recipe is searched")
    p.add_argument("--recipe", default="baseline", help="base recipe the search starts from")
    add_data_args(p)
    p.add_argument("--trials", type=at_least(1), default=10, help="trials to add to the study (re-running resumes it)")
    p.add_argument("--epochs", type=int, help="epochs of each trial (default: the recipe's)")
    p.add_argument("--img-size", type=int, help="input side in pixels (default: the recipe's)")
    p.add_argument(
        "--limit-train", type=int, metavar="N", help="train on a stratified subset of N images (default: all)"
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a base recipe value, e.g. --set optim.lr=0.01 (repeatable)",
    )
    p.add_argument("--storage", type=storage,
                   help="journal file path (default: OUT/study.journal) or postgresql://… for many hosts")  # fmt: skip
    p.add_argument("--workers", type=at_least(1), default=1,
                   help="worker processes sharing the storage, one GPU each (round-robin over --gpus)")  # fmt: skip
    p.add_argument("--gpus", metavar="I,…",
                   help="the GPUs the workers take in turn (CUDA_VISIBLE_DEVICES ids; default: every visible one; "
                        "none visible: the CPU)")  # fmt: skip
    p.add_argument("--device", type=device, default="auto", help="auto (default: the GPUs, else the CPU) or cpu")
    p.add_argument("--seed", type=SEED, default=0, help="sampler seed")
    p.add_argument("--out", type=out_dir, default=Path("runs/tune"), help="output folder (study, trials, final runs)")
    p.add_argument("--report", action="store_true", help="print the best trials and importances, save plots")
    p.add_argument("--final-seeds", type=list_of(SEED), metavar="S,…",
                   help="then train the best and the base recipe with each seed on the same budget and compare "
                        "them on the test split (OUT/final.md; default: no final runs)")  # fmt: skip
    add_tracking(p)
    p.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from fer_bench.experiment.tune import TuneJob, final_compare, plan_devices, report, tune
    from fer_bench.experiment.tune_space import read_space
    from fer_bench.models import get_spec
    from fer_bench.recipes import load_recipe

    sets, origins = flag_sets(args, skip=("seed",))  # --seed seeds the sampler
    one_model(args.model, "tune")
    get_spec(args.model)  # every name, value and path is checked before the study starts
    load_recipe(args.recipe, args.sets + sets, origins)
    check_data_args(args.dataset, args.data_dir)
    read_space(args.search)
    experiment = args.experiment if args.experiment != "fer-bench" else "fer-bench-tune"
    job = TuneJob(args.search, args.recipe, args.model, args.dataset, args.data_dir, tuple(args.sets + sets),
                  args.out, args.storage, args.trials, args.seed, args.tracking_uri, experiment,
                  not args.no_track, args.cache_dir)  # fmt: skip
    if args.device not in ("auto", "cpu"):
        raise ConfigError(f"--device {args.device}: tune takes auto or cpu; pick GPUs with --gpus.")
    devices = plan_devices(args.workers, args.gpus, args.device)  # checked before anything is written
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        print(json.dumps(tune(job, args.workers, devices), indent=2))
    print(report(job))
    if args.final_seeds:
        print("\n" + final_compare(job, args.final_seeds))
    return 0


DB_DRIVERS = {"postgresql": ("psycopg2", "psycopg"), "mysql": ("pymysql", "MySQLdb")}


def storage(text: str) -> str:
    """An argparse type: a study journal file (new, or one Optuna wrote) or a postgresql:// / mysql:// URL whose
    driver is installed; checked before any trial runs, so a wrong value never touches the user's files."""

    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give a journal file path or a postgresql:// URL")
    if "://" in text:
        scheme = text.split("://")[0].split("+")[0]
        if scheme not in DB_DRIVERS:
            raise argparse.ArgumentTypeError(f"{text.split('://')[0]}:// is not supported; give a journal file "
                                             "path, or a postgresql:// or mysql:// URL")  # fmt: skip
        if not any(importlib.util.find_spec(m) for m in DB_DRIVERS[scheme]):
            raise argparse.ArgumentTypeError(f"{scheme}:// needs one of {', '.join(DB_DRIVERS[scheme])} installed "
                                             f"(pip install {DB_DRIVERS[scheme][0]})")  # fmt: skip
        return text
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a journal file path (e.g. {text}/study.journal)")
    blocked = file_above(path)
    if blocked is not None:
        raise argparse.ArgumentTypeError(f"{text!r} lies under {str(blocked)!r}, a file; give a journal file path")
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as f:
            first = f.readline(4096)
        try:
            ok = isinstance(json.loads(first), dict) and "op_code" in json.loads(first)
        except ValueError:
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError(f"{text!r} is a file that Optuna did not write; give a new path or a "
                                             "study's journal file")  # fmt: skip
    return text
