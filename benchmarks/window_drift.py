"""How much does this machine's speed drift between consecutive timing windows? (Why figures are measured in pairs.)

    python benchmarks/window_drift.py --out results/bench/window-drift.json

One process, resnet18 at 48 px, batch 64, inference. (1) Three consecutive windows of 50 steps after a 3-step
warm-up, as the old single-shot cross-check timed first `fer-bench bench` and then the Timer: the ratio of each
window's median step rate to the next one's. The same model and code, so any ratio away from 1 is the machine.
(2) Two model instances alternated step by step (A B A B …, 100 pairs): the median of the step-by-step ratio, which
is what pairing recovers. Repeated ``--repeats`` times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fer_bench.models import create_model
from fer_bench.timing import MachineLoad, summary


def step_time(model, x) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        model(x)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    m1, m2 = create_model("resnet18")[0].eval(), create_model("resnet18")[0].eval()
    x = torch.randn(64, 3, 48, 48)
    consecutive, alternated = [], []
    with MachineLoad() as load:
        for _ in range(args.repeats):
            for _ in range(3):
                step_time(m1, x)
            windows = [np.median([step_time(m1, x) for _ in range(50)]) for _ in range(3)]
            consecutive += [float(windows[i + 1] / windows[i]) for i in range(2)]  # rate_i / rate_{i+1}
            alternated.append(float(np.median([step_time(m1, x) / step_time(m2, x) for _ in range(100)])))
    result = {
        "consecutive_window_rate_ratio": summary(consecutive),
        "alternated_step_ratio": summary(alternated),
        "conditions": {"model": "resnet18", "img_size": 48, "batch_size": 64, "threads": torch.get_num_threads(),
                       "torch": torch.__version__, **load.conditions},
    }  # fmt: skip
    print(json.dumps({k: {kk: v[kk] for kk in ("median", "min", "max")} for k, v in result.items() if "ratio" in k}))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
