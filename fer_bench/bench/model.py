"""Model throughput and cost, measured the way timm's benchmark.py does, with spread and conditions on every row.

Inference: synthetic input made on the device, ``eval()`` + ``inference_mode``, warm-up, then timed steps with a
device sync after each; several repeats; median and IQR of img/s and of step time. Training: forward, backward
and optimizer step, timed the same way; with a dataset, the same step fed by the real data path is timed in turn
with it, step by step (their ratio is the data path's cost). Batch-1 latency (median, p90). Peak memory in a
separate loop. Params and GMACs at batch 1. Each (model, size) runs in its own subprocess so one failure or
compile cache cannot skew the next.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

PRECISIONS = ("fp32", "amp_bf16", "amp_fp16")


@dataclass(frozen=True)
class BenchConfig:
    model: str
    img_size: int
    batch_size: int = 64
    precision: str = "fp32"
    channels_last: bool = False
    compile: str | None = None  # a torch.compile mode ("default", "max-autotune"...) or None
    device: str = "auto"
    warmup: int = 3  # untimed steps before each timed loop, at least ...
    warmup_s: float = 1.0  # ... and at least this many seconds of them (a fresh process reads low without)
    steps: int = 10  # timed steps per repeat
    repeats: int = 5
    latency_steps: int = 20
    dataset: str | None = "synthetic"  # end-to-end training figures fed by this dataset's real data path; None: skip
    data_dir: str | None = None


def _stats(prefix: str, values: list[float]) -> dict[str, float]:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return {f"{prefix}_median": float(med), f"{prefix}_iqr": float(q3 - q1), f"{prefix}_min": float(min(values)),
            f"{prefix}_max": float(max(values))}  # fmt: skip


def _setup(cfg: BenchConfig):
    import torch

    from fer_bench.bench.cost import count_params, gmacs, step_flops
    from fer_bench.engine.builders import resolve_device, resolve_precision
    from fer_bench.models import create_model

    device = resolve_device(cfg.device)
    _, amp_dtype = resolve_precision(cfg.precision, device)
    model, spec = create_model(cfg.model)
    info = count_params(model) | {"gmacs": gmacs(model, spec.in_chans, cfg.img_size)}
    info |= step_flops(model, spec.in_chans, cfg.img_size, cfg.batch_size)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    if cfg.compile:
        model = torch.compile(model, mode=cfg.compile)
    return model, spec, device, amp_dtype, fmt, info


def warm_up(fns, device, steps: int, seconds: float) -> None:
    """Run each of ``fns`` in turn for at least ``steps`` rounds and at least ``seconds``."""
    from fer_bench.bench.cost import sync

    start, done = time.perf_counter(), 0
    while done < steps or time.perf_counter() - start < seconds:
        for fn in fns:
            fn()
        sync(device)
        done += 1


def timed_steps(fn, device, warmup: int, steps: int, repeats: int, warmup_s: float = 0.0) -> list[float]:
    """Per-step seconds over ``repeats`` × ``steps`` (after ``warmup`` steps and ``warmup_s`` seconds), with a
    device sync after every step."""
    from fer_bench.bench.cost import sync

    warm_up([fn], device, warmup, warmup_s)
    times = []
    for _ in range(repeats * steps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def _timed_interleaved(fns, device, warmup: int, steps: int, repeats: int, warmup_s: float = 0.0) -> list[list[float]]:
    """Per-step seconds of each of ``fns``, one step of each in turn, so that drift in machine speed (another
    process, clock changes) hits them alike and their ratio stays honest."""
    from fer_bench.bench.cost import sync

    warm_up(fns, device, warmup, warmup_s)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats * steps):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            sync(device)
            out.append(time.perf_counter() - start)
    return times


PARTS = ("infer", "latency", "train", "memory")


@dataclass
class Steps:
    """The steps that `measure` times, built once per configuration: also what an independent check times."""

    model: Any
    spec: Any
    device: Any
    fmt: Any
    info: dict[str, Any]
    infer: Callable[..., None]  # forward of the batch under inference_mode (and autocast)
    infer1: Callable[[], None]  # the same at batch 1 (latency)
    train: Callable[..., None]  # forward, cross-entropy, backward, SGD step


def build_steps(cfg: BenchConfig) -> Steps:
    import torch

    model, spec, device, amp_dtype, fmt, info = _setup(cfg)
    autocast = lambda: torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)  # noqa: E731
    x = torch.randn(cfg.batch_size, spec.in_chans, cfg.img_size, cfg.img_size, device=device).to(memory_format=fmt)
    y = torch.randint(0, 7, (cfg.batch_size,), device=device)
    x1 = x[:1].clone()

    def infer(inp=x):
        with torch.inference_mode(), autocast():
            model(inp)

    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def train(xb=x, yb=y):
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return Steps(model, spec, device, fmt, info, infer, lambda: infer(x1), train)


def measure(cfg: BenchConfig, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """All figures for one configuration, or those of ``parts`` (call in a fresh process for clean peak-memory
    numbers)."""
    s = build_steps(cfg)
    device = s.device
    row = {**asdict(cfg), **s.info}
    s.model.eval()
    if "infer" in parts:
        t = timed_steps(s.infer, device, cfg.warmup, cfg.steps, cfg.repeats, cfg.warmup_s)
        row |= _stats("infer_step_ms", [v * 1e3 for v in t]) | _stats("infer_img_s", [cfg.batch_size / v for v in t])
    if "latency" in parts:
        lat = timed_steps(s.infer1, device, cfg.warmup, cfg.latency_steps, 1, cfg.warmup_s)
        row |= {"latency_ms_median": float(np.median(lat) * 1e3),
                "latency_ms_p90": float(np.percentile(lat, 90) * 1e3)}  # fmt: skip
    s.model.train()
    if "train" in parts:
        row |= _measure_train(cfg, s.train, s.spec, device, s.fmt)
    if "memory" in parts:
        row |= _peak_memory(s.train, device)
    return row | ceiling_share(row, cfg.precision, device) | conditions(device)


def ceiling_share(row: dict[str, Any], precision: str, device) -> dict[str, Any]:
    """Achieved GFLOP/s of the timed parts of ``row`` (FLOPs per step × steps/s) and their share of a large matmul
    measured on the same device and threads at the row's precision (bf16 or fp16 for autocast, else fp32)."""
    import torch

    from fer_bench.bench.cost import matmul_ceiling

    dtype = {"amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}.get(precision, torch.float32)
    out = dict(matmul_ceiling(dtype, device=str(device)))
    for part in ("infer", "train"):
        if f"{part}_img_s_median" in row:
            achieved = row[f"{part}_gflop_per_step"] * row[f"{part}_img_s_median"] / row["batch_size"]
            out |= {f"{part}_gflops_median": achieved, f"{part}_ceiling_share": achieved / out["ceiling_gflops"]}
    return out


def steps_per_repeat(cfg: BenchConfig, part: str) -> int:
    """Timed steps per repeat of ``part`` ("infer" or "train"): training takes half as many, at least 2."""
    return cfg.steps if part == "infer" else max(2, cfg.steps // 2)


def _measure_train(cfg: BenchConfig, train, spec, device, fmt) -> dict[str, Any]:
    row: dict[str, Any] = {}
    train_steps = steps_per_repeat(cfg, "train")
    if cfg.dataset:  # model-only and end-to-end steps interleaved: their ratio is the data path's cost
        feed = _real_batches(cfg, spec, device, fmt)
        t, t_e2e = _timed_interleaved([train, lambda: train(*feed())], device, cfg.warmup, train_steps, cfg.repeats,
                                      cfg.warmup_s)  # fmt: skip
        row |= _stats("e2e_train_img_s", [cfg.batch_size / s for s in t_e2e])
        # step by step: model-only time / end-to-end time of the step that ran right after it
        row |= _stats("e2e_over_model_only", [m / e for m, e in zip(t, t_e2e, strict=True)])
    else:
        t = timed_steps(train, device, cfg.warmup, train_steps, cfg.repeats, cfg.warmup_s)
    row |= _stats("train_step_ms", [s * 1e3 for s in t]) | _stats("train_img_s", [cfg.batch_size / s for s in t])
    if cfg.dataset:
        row["e2e_over_model_only"] = row["e2e_over_model_only_median"]
    return row


def _real_batches(cfg: BenchConfig, spec, device, fmt):
    """Training batches through the real data path: the decoded uint8 store on the device, batched augmentation."""
    import torch

    from fer_bench.data import load_dataset
    from fer_bench.data.augment import BatchAugment, Normalize
    from fer_bench.engine.steps import Batches
    from fer_bench.recipes import load_recipe

    data = load_dataset(cfg.dataset, cfg.data_dir)
    idx = data.split_indices("train")
    images = torch.from_numpy(np.ascontiguousarray(data.images[idx])).to(device)
    batches = Batches(images, torch.from_numpy(data.labels[idx]).to(device), batch_size=cfg.batch_size, shuffle=True)
    augment = BatchAugment(load_recipe("baseline").augment, Normalize(cfg.img_size, spec.in_chans, spec.mean, spec.std))
    gen = torch.Generator(device).manual_seed(0)
    state = {"epoch": 0, "it": batches.epoch(0)}

    def feed():
        try:
            xb, yb = next(state["it"])
        except StopIteration:
            state["epoch"] += 1
            state["it"] = batches.epoch(state["epoch"])
            xb, yb = next(state["it"])
        if len(yb) < cfg.batch_size:  # keep every timed step at the stated batch size
            return feed()
        xb, yb = augment(xb, yb, gen)
        return xb.contiguous(memory_format=fmt), yb

    return feed


def _peak_memory(train, device) -> dict[str, float]:
    """Peak memory of a training step in its own loop: CUDA allocator peak, or the process's max RSS on CPU."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        train()
        torch.cuda.synchronize(device)
        return {"peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20, "peak_mem_kind": "cuda_allocated"}
    train()
    return {"peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_mem_kind": "cpu_max_rss"}


def conditions(device) -> dict[str, Any]:
    """The measurement's conditions: the device's name, threads and library versions a bench row records."""
    import torch

    from fer_bench.utils import provenance

    v = provenance.versions()
    return {"device_name": provenance.device_name(device), "torch": v["torch"], "cuda": v["cuda"], "cudnn": v["cudnn"],
            "threads": torch.get_num_threads(), "git_sha": provenance.git_sha(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip


def measure_with_oom_backoff(cfg: BenchConfig) -> dict[str, Any]:
    """On CUDA out-of-memory, halve the batch until it fits; the row reports the batch actually used."""

    import torch

    requested = cfg.batch_size
    while True:
        try:
            return measure(cfg) | {"batch_size_requested": requested}
        except torch.cuda.OutOfMemoryError:
            if cfg.batch_size == 1:
                raise
            torch.cuda.empty_cache()
            cfg = replace(cfg, batch_size=cfg.batch_size // 2)


def run_isolated(cfg: BenchConfig, timeout: float = 1800) -> dict[str, Any]:
    """Measure ``cfg`` in a fresh Python process; a failure becomes a row with an ``error`` field."""
    cmd = [sys.executable, "-m", "fer_bench.bench.model", json.dumps(asdict(cfg))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ})
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return asdict(cfg) | {"error": tail[:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def csv_name(mode: str, cfg: BenchConfig, row: dict[str, Any]) -> str:
    """File names that encode the conditions, e.g. ``bench-infer-amp_bf16-nhwc-pt2.14-h100.csv``."""
    torch_v = ".".join(str(row.get("torch", "na")).split("+")[0].split(".")[:2])
    dev = _short_device(str(row.get("device_name", cfg.device)))
    comp = f"-compile_{cfg.compile}" if cfg.compile else ""
    return f"bench-{mode}-{cfg.precision}-{'nhwc' if cfg.channels_last else 'nchw'}{comp}-pt{torch_v}-{dev}.csv"


def _short_device(name: str) -> str:
    low = name.lower()
    for key in ("h200", "h100", "a100", "l40s", "l4", "a10", "v100", "t4", "4090", "3090"):
        if key in low:
            return key
    return "cpu" if "cuda" not in low and "nvidia" not in low else low.replace(" ", "_")[:20]


if __name__ == "__main__":  # the subprocess entry of run_isolated
    row = measure_with_oom_backoff(BenchConfig(**json.loads(sys.argv[1])))
    print(json.dumps(row))
