"""Why a whole `measure()` call can read inference ~10 % below an equal Timer window (issue #14): one factor at a time.

    python benchmarks/whole_call_probe.py --factor baseline \\
        --out results/bench/check-vs-timer-process/probe/baseline.json
    MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        python benchmarks/whole_call_probe.py --factor baseline --tag fixed-malloc --out …/probe/fixed-malloc.json

Each run is one fresh process that pairs bench's inference figure with a ``torch.utils.benchmark.Timer`` window as
long as bench's timed region (the Timer statement is the one of ``check_bench_vs_timer.py``), A B A B …, and reports
the median of the pair-by-pair ratio bench ÷ Timer with its IQR. ``--factor`` changes one thing against ``baseline``
(= ``check_bench_vs_timer.py --window-pairs``: a whole ``measure(cfg, parts=("infer",))`` per pair):

- ``nogc``: Python's garbage collector off for the whole loop (``timeit`` turns it off for the Timer side only);
- ``same-model``: bench's warm-up and 5 × 10 timed steps as ``measure()`` runs them, on one model built once, instead
  of a fresh model per call;
- ``timer-first``: the Timer window first in every pair (the ratio is still bench ÷ Timer).

glibc's allocator is a process setting: run ``baseline`` again with the environment above (``--tag`` names it).
Needs an idle machine: the conditions record the load and other processes' CPU seconds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_bench_vs_timer import timer_statements  # noqa: E402

from fer_bench.bench import BenchConfig, build_steps, measure, timed_steps  # noqa: E402
from fer_bench.bench import _conditions as bench_conditions  # noqa: E402
from fer_bench.timing import MachineLoad, paired  # noqa: E402

FACTORS = ("baseline", "nogc", "same-model", "timer-first")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--factor", choices=FACTORS, default="baseline")
    ap.add_argument("--tag", default="", help="a name for the process setting this run had (e.g. fixed-malloc)")
    ap.add_argument("--pairs", type=int, default=9)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--steps", type=int, default=10, help="bench's timed steps per repeat (5 repeats)")
    ap.add_argument("--warmup-s", type=float, default=1.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.pairs < 5:
        ap.error(f"--pairs {args.pairs}: at least 5")
    cfg = BenchConfig(args.model, 48, 64, device="cpu", warmup_s=args.warmup_s, steps=args.steps, dataset=None)
    timer = timer_statements(args.model, cfg.img_size, cfg.batch_size)["infer"]
    window = {"s": 0.5}
    shared = build_steps(cfg) if args.factor == "same-model" else None

    def bench_side() -> float:
        if shared is None:
            value = measure(cfg, parts=("infer",))["infer_img_s_median"]
        else:
            shared.model.eval()
            t = timed_steps(shared.infer, shared.device, cfg.warmup, cfg.steps, cfg.repeats, cfg.warmup_s)
            value = float(np.median([cfg.batch_size / v for v in t]))
        window["s"] = cfg.repeats * cfg.steps * cfg.batch_size / value
        return value

    def timer_side() -> float:
        return cfg.batch_size / timer.blocked_autorange(min_run_time=window["s"]).median

    if args.factor == "nogc":
        gc.collect()
        gc.disable()
    say = lambda msg: print(f"{args.factor}: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    with MachineLoad() as load:
        if args.factor == "timer-first":
            bench_side()  # the first Timer window is as long as a bench call's timed region
            res = paired(timer_side, bench_side, pairs=args.pairs, names=("timer_img_s", "fer_bench_img_s"),
                         progress=say)  # fmt: skip
            b, t = res["fer_bench_img_s"]["values"], res["timer_img_s"]["values"]
        else:
            res = paired(bench_side, timer_side, pairs=args.pairs, names=("fer_bench_img_s", "timer_img_s"),
                         progress=say)  # fmt: skip
            b, t = res["fer_bench_img_s"]["values"], res["timer_img_s"]["values"]
    gc.enable()
    ratios = [x / y for x, y in zip(b, t, strict=True)]
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    out = {
        "factor": args.factor, "tag": args.tag, "ratio_bench_over_timer_median": float(med),
        "ratio_iqr": float(q3 - q1), "ratios": ratios, "paired": res,
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "conditions": {k: v for k, v in bench_conditions(cfg_device()).items()
                       if k in ("device_name", "torch", "threads", "git_sha", "timestamp")} | load.conditions,
    }  # fmt: skip
    print(json.dumps({k: v for k, v in out.items() if k not in ("paired", "ratios")}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def cfg_device():
    import torch

    return torch.device("cpu")


if __name__ == "__main__":
    sys.exit(main())
