"""Cross-check `fer-bench bench` against an independent ``torch.utils.benchmark.Timer`` statement of the same step.

    python tools/check_bench_vs_timer.py --model resnet18 --img-size 48 --out results/bench/check-vs-timer-1.json

One fresh process. The bench side is what `fer-bench bench` times: the step closures of
``fer_bench.bench.model.build_steps`` (its model, input, inference_mode/autocast, optimizer) timed by
``fer_bench.bench.model.timed_steps`` (a device sync and a ``perf_counter`` pair around every step; the figure is the
median step). The independent side is a Timer statement written here with none of fer-bench's timing code: its own model
from the registry, its own input and optimizer, ``Timer.timeit``. Both are warmed up as bench warms up, then measured
alternately, A B A B …, in short windows of ``--window`` steps, so that the machine's drift (±20-35 % between windows a
few seconds apart on this shared 2-core machine: results/bench/window-drift.json) hits both sides alike. The ratio is
taken pair by pair; its median is the figure. Exit code 1 when a median ratio is outside ±5 %.

Two more levels pair whole calls rather than steps:

- ``--process-pairs`` (default 5): what `fer-bench bench` reports, run as the CLI runs it. Each bench call is
  ``fer_bench.bench.model.run_isolated`` (a fresh Python process that builds the model and measures inference, latency,
  training and memory: the CLI's own subprocess), each Timer call a fresh process of this script
  (``--timer-process``) that builds the independent statements, warms each up as long as bench does and times a
  window as long as bench's timed region of that part. Both parts come from the same pair of processes.
- ``--window-pairs`` (default 0): whole ``measure(parts=(part,))`` calls repeated inside this one process against
  Timer windows of the same length; the CLI never runs measure() twice in one process, and this level is kept to
  study why it reads inference low (results/bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.utils.benchmark as tb

from fer_bench.bench.model import (
    BenchConfig,
    build_steps,
    measure,
    run_isolated,
    steps_per_repeat,
    timed_steps,
    warm_up,
)
from fer_bench.bench.model import conditions as bench_conditions
from fer_bench.bench.timing import MachineLoad, paired
from fer_bench.models import create_model, get_spec
from fer_bench.utils.errors import FerBenchError

TOLERANCE = 0.05


def timer_statements(model_name: str, img_size: int, batch_size: int) -> dict[str, tb.Timer]:
    """Independent Timer statements: forward under inference_mode; forward, cross-entropy, backward, SGD step.

    Each statement has a model of its own, so that neither times a model the other changed (with one model for
    both, the training statement's SGD steps and batch-norm statistics changed what the inference statement timed
    later, while every `measure()` call times a fresh model). Not a speed effect, checked: a fresh resnet18 and one
    after 35 such steps infer equally fast (step pairs, median time ratio 0.995); it keeps the two sides alike.
    """
    threads = torch.get_num_threads()
    infer = "with torch.inference_mode():\n    model(x)"
    train = ("loss = torch.nn.functional.cross_entropy(model(x), y)\nopt.zero_grad(set_to_none=True)\n"
             "loss.backward()\nopt.step()")  # fmt: skip
    timers = {}
    for part, stmt, mode in (("infer", infer, "model.eval()"), ("train", train, "model.train()")):
        torch.manual_seed(1)
        model, spec = create_model(model_name)
        x = torch.randn(batch_size, spec.in_chans, img_size, img_size)
        y = torch.randint(0, 7, (batch_size,))
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        env = {"model": model, "x": x, "y": y, "opt": opt, "torch": torch}
        timers[part] = tb.Timer(stmt=stmt, setup=mode, globals=env, num_threads=threads)
    return timers


def int_pair(text: str) -> tuple[int, int]:
    a, b = (int(v) for v in text.split(","))
    if min(a, b) < 1:
        raise argparse.ArgumentTypeError(f"{text}: two positive integers, e.g. 41,31")
    return a, b


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--img-size", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pairs", type=int_pair, default=(41, 31), metavar="INFER,TRAIN", help="pairs per part")
    ap.add_argument("--window", type=int_pair, default=(2, 1), metavar="INFER,TRAIN", help="steps per window")
    ap.add_argument("--warmup-s", type=float, default=1.0, help="untimed warm-up seconds before each part")
    ap.add_argument("--process-pairs", type=int, default=5,
                    help="pair fresh `fer-bench bench` processes (as the CLI runs them) with fresh Timer processes "
                         "timing windows of the same length, this many pairs (0: skip)")  # fmt: skip
    ap.add_argument("--window-pairs", type=int, default=0,
                    help="also pair whole `measure()` calls repeated in this process with Timer windows of the same "
                         "length, this many pairs (0: skip)")  # fmt: skip
    ap.add_argument("--out", type=Path)
    ap.add_argument("--timer-process", metavar="JSON", help=argparse.SUPPRESS)  # the Timer side of --process-pairs
    args = ap.parse_args()
    if args.timer_process:
        print(json.dumps(timer_process(**json.loads(args.timer_process))))
        return 0
    if min(args.pairs) < 5 or any(n != 0 and n < 5 for n in (args.window_pairs, args.process_pairs)):
        ap.error(
            f"--pairs {args.pairs[0]},{args.pairs[1]} --window-pairs {args.window_pairs} "
            f"--process-pairs {args.process_pairs}: at least 5 pairs each (0 skips a whole-call level)"
        )
    try:
        get_spec(args.model)
    except FerBenchError as exc:
        ap.error(str(exc))
    cfg = BenchConfig(args.model, args.img_size, args.batch_size, device="cpu", warmup_s=args.warmup_s, dataset=None)
    timers = timer_statements(args.model, args.img_size, args.batch_size)
    result = {
        "bench_config": asdict(cfg),
        "tolerance": TOLERANCE,
        "method": "step windows, A B A B, pair-by-pair ratio",
    }
    with MachineLoad() as load:
        steps = build_steps(cfg)
        for part, k, n_pairs in (("infer", args.window[0], args.pairs[0]), ("train", args.window[1], args.pairs[1])):
            fn, timer = (steps.infer, timers["infer"]) if part == "infer" else (steps.train, timers["train"])
            (steps.model.eval if part == "infer" else steps.model.train)()
            warm_up([fn], steps.device, cfg.warmup, cfg.warmup_s)  # bench's own warm-up ...
            timer.blocked_autorange(min_run_time=cfg.warmup_s)  # ... and the Timer's, as long
            ours = lambda fn=fn, k=k: args.batch_size / float(np.median(timed_steps(fn, steps.device, 0, k, 1)))  # noqa: E731
            independent = lambda t=timer, k=k: args.batch_size / t.timeit(k).mean  # noqa: E731
            say = lambda msg, part=part: print(f"{part}: {msg}", file=sys.stderr, flush=True)  # noqa: E731
            result[part] = paired(ours, independent, pairs=n_pairs, names=("fer_bench_img_s", "timer_img_s"),
                                  progress=say)  # fmt: skip
            result[part] |= {"steps_per_window": k}
            result[f"{part}_ratio_median"] = result[part]["ratio"]["median"]
            result[f"{part}_within_5_percent"] = abs(result[part]["ratio"]["median"] - 1) <= TOLERANCE
        if args.window_pairs:  # bench as the CLI runs it: a whole measure() call (fresh model, warm-up, repeats)
            for part in ("infer", "train"):
                result[f"window_{part}"] = window_pairs(cfg, part, timers[part], args.window_pairs, args.batch_size)
                result[f"window_{part}_ratio_median"] = result[f"window_{part}"]["ratio"]["median"]
                result[f"window_{part}_within_5_percent"] = abs(result[f"window_{part}_ratio_median"] - 1) <= TOLERANCE
        if args.process_pairs:  # bench as the CLI runs it: one fresh process per configuration
            result["process"] = process_pairs(cfg, args.process_pairs)
            for part in ("infer", "train"):
                median = result[f"process_{part}_ratio_median"] = result["process"][part]["ratio"]["median"]
                result[f"process_{part}_within_5_percent"] = abs(median - 1) <= TOLERANCE
    conditions = bench_conditions(steps.device)
    result["conditions"] = {k: conditions[k] for k in ("device_name", "torch", "threads", "git_sha", "timestamp")}
    result["conditions"] |= load.conditions
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(v for k, v in result.items() if k.endswith("within_5_percent")) else 1


def window_pairs(cfg: BenchConfig, part: str, timer: tb.Timer, n_pairs: int, batch_size: int) -> dict:
    """Whole ``measure(cfg, parts=(part,))`` calls against Timer windows as long as bench's timed region was."""
    key = f"{part}_img_s_median"
    window = {"s": 0.5}

    def ours() -> float:
        row = measure(cfg, parts=(part,))
        n_steps = cfg.repeats * steps_per_repeat(cfg, part)
        window["s"] = n_steps * batch_size / row[key]
        return row[key]

    def independent() -> float:
        return batch_size / timer.blocked_autorange(min_run_time=window["s"]).median

    say = lambda msg: print(f"window {part}: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    return paired(ours, independent, pairs=n_pairs, names=("fer_bench_img_s", "timer_img_s"), progress=say)


def process_pairs(cfg: BenchConfig, n_pairs: int) -> dict:
    """Fresh `fer-bench bench` processes (``run_isolated``, the CLI's) against fresh Timer processes whose windows are
    as long as the bench process's timed regions; inference and training from each pair of processes."""
    windows = {"infer_s": 0.5, "train_s": 0.5}
    n_steps = {part: cfg.repeats * steps_per_repeat(cfg, part) for part in ("infer", "train")}

    def ours() -> dict[str, float]:
        row = run_isolated(cfg)
        if "error" in row:
            raise SystemExit(f"check_bench_vs_timer: the bench process failed: {row['error']}")
        rates = {part: row[f"{part}_img_s_median"] for part in ("infer", "train")}
        windows.update({f"{part}_s": n_steps[part] * cfg.batch_size / rates[part] for part in rates})
        return rates

    def independent() -> dict[str, float]:
        spec = {"model": cfg.model, "img_size": cfg.img_size, "batch_size": cfg.batch_size,
                "warmup_s": cfg.warmup_s, **windows}  # fmt: skip
        cmd = [sys.executable, __file__, "--timer-process", json.dumps(spec)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"check_bench_vs_timer: the Timer process failed: {proc.stderr.strip()[-300:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    say = lambda msg: print(f"process: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    # no warm-up pair: each call is a fresh process that warms itself up, and the bench call of a pair runs first
    # and sets the Timer's windows
    res = paired(ours, independent, pairs=n_pairs, warmup=0, names=("fer_bench_img_s", "timer_img_s"),
                 progress=say, fields=("infer", "train"))  # fmt: skip
    return res | {"method": "fresh process per call: fer_bench.bench.model.run_isolated vs --timer-process"}


def timer_process(model: str, img_size: int, batch_size: int, warmup_s: float, infer_s: float,
                  train_s: float) -> dict[str, float]:  # fmt: skip
    """In a fresh process: the independent statements, inference then training as bench orders them, each warmed up
    for ``warmup_s`` and then timed over a window of ``infer_s`` / ``train_s`` seconds; images/s of the median block."""
    timers = timer_statements(model, img_size, batch_size)
    out = {}
    for part, window in (("infer", infer_s), ("train", train_s)):
        timers[part].blocked_autorange(min_run_time=warmup_s)
        out[part] = batch_size / timers[part].blocked_autorange(min_run_time=window).median
    return out


if __name__ == "__main__":
    sys.exit(main())
