"""Model cost: parameter counts, GMACs at batch 1, FLOPs of a training or inference step, the matmul ceiling they are
compared with, and a quick inference-throughput figure.

`fer-bench bench` measures throughput properly (repeats, IQR, conditions); the figure here is the
one every result row carries, taken on the device that trained the model.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count


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


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **_) -> int:  # fmt: skip
    """FLOPs of a convolution's backward: grad_input and grad_weight each cost what the forward costs,
    2·N·C_out·(C_in/groups)·k_h·k_w·H_out·W_out (``w_shape`` holds C_in/groups). NOTE: torch's own formula counts
    grad_weight of a grouped convolution as dense, ``groups`` times too many (a depthwise layer: C times)."""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs that ``fn()`` runs in convolutions and matrix multiplies (what ``torch.utils.flop_counter`` counts: a
    multiply-add is 2), with grouped-convolution backward counted per group (:func:`_conv_backward_flops`).
    Normalisation, activations, the optimizer and the weight average are not counted: they are memory-bound and
    not in a matmul ceiling's units."""
    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()


def step_flops(model: nn.Module, in_chans: int, size: int, batch_size: int) -> dict[str, float]:
    """GFLOP of one inference step and one training step (forward + backward) of ``batch_size`` images.

    Counted at batch 2 and scaled (convolutions and matmuls are linear in the batch). Where the backward cannot be
    counted, training is taken as 3x the forward (one forward, two backward products: a documented approximation).
    """
    was_training = model.training
    x = torch.zeros(2, in_chans, size, size, device=next(model.parameters()).device)
    model.eval()
    with torch.inference_mode():
        infer = count_flops(lambda: model(x))
    model.train()
    try:
        train, how = count_flops(lambda: model(x).float().sum().backward()), "counted"
    except RuntimeError:
        train, how = 3 * infer, "3x forward"
    for p in model.parameters():
        p.grad = None
    model.train(was_training)
    scale = batch_size / 2 / 1e9
    return {"infer_gflop_per_step": infer * scale, "train_gflop_per_step": train * scale, "train_flops_method": how}


@functools.cache
def matmul_ceiling(
    dtype: torch.dtype = torch.float32, min_s: float = 1.0, max_n: int = 2048, device: str = "cpu"
) -> dict[str, Any]:
    """GFLOP/s of a square matmul at ``dtype`` on ``device`` (on CPU: this process's threads), the ceiling that a
    step's achieved GFLOP/s is a share of. Measured once per process (cached).

    The side doubles from 256 until one product takes 0.1 s or reaches ``max_n`` (a processor without bf16
    instructions multiplies bf16 hundreds of times slower, and this bounds the cost), then products are timed for at
    least ``min_s`` seconds and 3 calls; the median rate is the ceiling.
    """
    dev, n = torch.device(device), 256
    while True:
        a, b = (torch.randn(n, n, device=dev).to(dtype) for _ in range(2))
        start = time.perf_counter()
        a @ b
        sync(dev)
        if time.perf_counter() - start >= 0.1 or n >= max_n:
            break
        n *= 2
    rates, start = [], time.perf_counter()
    while len(rates) < 3 or time.perf_counter() - start < min_s:
        t = time.perf_counter()
        a @ b
        sync(dev)
        rates.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return {"ceiling_gflops": statistics.median(rates), "ceiling_matmul_n": n, "ceiling_dtype": str(dtype)[6:]}


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
