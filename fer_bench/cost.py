"""Model cost: parameter counts, GMACs at batch 1 and a quick inference-throughput figure.

`fer-bench bench` measures throughput properly (repeats, IQR, conditions); the figure here is the
one every result row carries, taken on the device that trained the model.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": total, "trainable_params": trainable}


def gmacs(model: nn.Module, in_chans: int, size: int, device: torch.device | str = "cpu") -> float:
    """Multiply-accumulates (×1e9) of one forward pass at batch 1 (``torch.utils.flop_counter``: FLOPs / 2)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_chans, size, size, device=device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def infer_throughput(
    model: nn.Module,
    in_chans: int,
    size: int,
    device: torch.device,
    *,
    batch_size: int = 64,
    steps: int = 5,
    warmup: int = 2,
    repeats: int = 3,
    channels_last: bool = False,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """Median images/s of model-only inference on synthetic input created on ``device``."""
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, in_chans, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rates = []
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                model(x)
            sync(device)
            rates.append(batch_size * steps / (time.perf_counter() - start))
    model.train(was_training)
    return statistics.median(rates)
