"""Cross-check `fer-bench bench` against an independent ``torch.utils.benchmark.Timer`` statement of the same step.

    python benchmarks/check_bench_vs_timer.py --model resnet18 --img-size 48 --out results/bench/check-vs-timer-1.json

One fresh process. Inference, then training: ``fer_bench.bench.measure`` (the code `fer-bench bench` runs, with its
own model, warm-up and timed loop) and a Timer statement written here without any fer-bench timing code (its own
model from the registry, its own input, ``blocked_autorange``) measured alternately, A B A B …, after one warm-up
pair. The ratio is taken pair by pair; its median is the figure. Exit code 1 when a median ratio is outside ±5 %.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.utils.benchmark as tb

from fer_bench.bench import BenchConfig, measure
from fer_bench.models import create_model
from fer_bench.timing import MachineLoad, paired

TOLERANCE = 0.05


def timer_statements(model_name: str, img_size: int, batch_size: int) -> dict[str, tb.Timer]:
    """Independent Timer statements: forward under inference_mode; forward, cross-entropy, backward, SGD step."""
    torch.manual_seed(1)
    model, spec = create_model(model_name)
    x = torch.randn(batch_size, spec.in_chans, img_size, img_size)
    y = torch.randint(0, 7, (batch_size,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    setup = {"model": model, "x": x, "y": y, "opt": opt, "torch": torch}
    infer = "with torch.inference_mode():\n    model(x)"
    train = ("loss = torch.nn.functional.cross_entropy(model(x), y)\nopt.zero_grad(set_to_none=True)\n"
             "loss.backward()\nopt.step()")  # fmt: skip
    threads = torch.get_num_threads()
    return {
        "infer": tb.Timer(stmt=infer, setup="model.eval()", globals=setup, num_threads=threads),
        "train": tb.Timer(stmt=train, setup="model.train()", globals=setup, num_threads=threads),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--img-size", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=3, help="bench: timed steps per repeat (5 repeats)")
    ap.add_argument("--warmup-s", type=float, default=1.0, help="bench: untimed warm-up seconds per timed loop")
    ap.add_argument("--min-run-time", type=float, default=0.5,
                    help="Timer.blocked_autorange(min_run_time=...) at least; each Timer window lasts as long as "
                         "the bench window before it")  # fmt: skip
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cfg = BenchConfig(
        args.model, args.img_size, args.batch_size, device="cpu", warmup_s=args.warmup_s, steps=args.steps, dataset=None
    )
    timers = timer_statements(args.model, args.img_size, args.batch_size)
    img_s = {"infer": "infer_img_s_median", "train": "train_img_s_median"}
    result = {"bench_config": asdict(cfg), "tolerance": TOLERANCE, "timer_min_run_time_s": args.min_run_time}
    with MachineLoad() as load:
        for part in ("infer", "train"):
            timer = timers[part]
            window = {"s": args.min_run_time}

            def ours(part=part, window=window) -> float:
                row = measure(cfg, parts=(part,))
                n_steps = cfg.repeats * (cfg.steps if part == "infer" else max(2, cfg.steps // 2))
                window["s"] = max(args.min_run_time, n_steps * args.batch_size / row[img_s[part]])
                return row[img_s[part]]

            def independent(t=timer, window=window) -> float:  # as long as bench's timed region just was
                return args.batch_size / t.blocked_autorange(min_run_time=window["s"]).median

            say = lambda msg, part=part: print(f"{part}: {msg}", file=sys.stderr, flush=True)  # noqa: E731
            result[part] = paired(ours, independent, pairs=args.pairs, names=("fer_bench_img_s", "timer_img_s"),
                                  progress=say)  # fmt: skip
            result[f"{part}_ratio_median"] = result[part]["ratio"]["median"]
            result[f"{part}_within_5_percent"] = abs(result[part]["ratio"]["median"] - 1) <= TOLERANCE
    conditions = measure(replace(cfg, warmup=0, warmup_s=0, steps=1, repeats=1), parts=())
    result["conditions"] = {k: conditions[k] for k in ("device_name", "torch", "threads", "git_sha", "timestamp")}
    result["conditions"] |= load.conditions
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["infer_within_5_percent"] and result["train_within_5_percent"] else 1


if __name__ == "__main__":
    sys.exit(main())
