"""`fer-bench compare A B`: two rows on the same test images, paired sample by sample."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fer_bench.utils.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare two rows on the same test images: intervals, the paired "
                                       "permutation test, calibration")  # fmt: skip
    p.add_argument("a", metavar="A", help="a run folder (result.json + predictions.npz) or a predictions file; for a "
                   "line of several seeds, a folder of its run folders or paths joined by commas")  # fmt: skip
    p.add_argument("b", metavar="B", help="the other row or line, on the same sample ids (any seeds)")
    p.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default: 2000; at least 1000)")
    p.add_argument("--rounds", type=int, default=None, help="permutation test rounds (default: 10000, also the least)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's and the test's random seed (default 0)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the comparison as JSON here (default: none)")
    p.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from fer_bench.evaluation import comparison, stats

    n_boot = stats.N_BOOT if args.resamples is None else args.resamples
    if n_boot < 1000:
        raise ConfigError(f"--resamples {n_boot}: a 95 % percentile interval needs at least 1000; give 1000 or more.")
    n_perm = stats.N_PERM if args.rounds is None else args.rounds
    if n_perm < stats.N_PERM:
        raise ConfigError(f"--rounds {n_perm}: the test's p needs at least {stats.N_PERM} rounds; give more.")
    result = comparison.compare(comparison.load_line(args.a), comparison.load_line(args.b), n_boot=n_boot,
                                n_perm=n_perm, seed=args.seed)  # fmt: skip
    print(comparison.render(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0
