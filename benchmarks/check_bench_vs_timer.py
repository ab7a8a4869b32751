"""Cross-check `fer-bench bench` against torch.utils.benchmark: same model, same forward, same process.

    python benchmarks/check_bench_vs_timer.py --model resnet18 --img-size 48 --out results/bench/check-vs-timer.json

Exit code 1 when the two inference img/s figures differ by more than 10 %.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch
import torch.utils.benchmark as tb

from fer_bench.bench import BenchConfig, measure


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--img-size", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cfg = BenchConfig(args.model, args.img_size, args.batch_size, device="cpu")
    ours = measure(cfg)
    from fer_bench.models import create_model

    model, spec = create_model(args.model)
    model.eval()
    x = torch.randn(args.batch_size, spec.in_chans, args.img_size, args.img_size)

    def forward():
        with torch.inference_mode():
            model(x)

    timer = tb.Timer(stmt="forward()", globals={"forward": forward}, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=5.0)
    independent = args.batch_size / m.median
    ratio = ours["infer_img_s_median"] / independent
    result = {"bench_config": asdict(cfg), "fer_bench_infer_img_s_median": ours["infer_img_s_median"],
              "fer_bench_infer_img_s_iqr": ours["infer_img_s_iqr"], "timer_blocked_autorange_img_s": independent,
              "timer_iqr_s": m.iqr, "ratio": ratio, "within_10_percent": abs(ratio - 1) <= 0.10,
              "device_name": ours["device_name"], "torch": ours["torch"], "threads": ours["threads"]}  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["within_10_percent"] else 1


if __name__ == "__main__":
    sys.exit(main())
