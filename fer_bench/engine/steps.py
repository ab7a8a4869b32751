"""The training engine: one epoch of training, one pass of prediction. Objects in, ``dict[str, float]`` out.

Nothing here knows about files, recipes, MLflow or Optuna.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from fer_bench.data.augment import ten_crop
from fer_bench.evaluation.metrics import classification_metrics
from fer_bench.recipes.parts import TTA_MODES


class Batches:
    """Batches of (uint8 images, labels) drawn from tensors that already sit on the training device.

    The shuffle order of epoch ``e`` depends only on (seed, e), so a resumed run sees the same batches.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, shuffle: bool = False, seed: int = 0
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            order = order.to(self.images.device)
        else:
            order = torch.arange(n, device=self.images.device)
        for i in range(0, n, self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.images[idx], self.labels[idx]


# Steps between progress reports: each reads the running loss back from the device (a host synchronisation).
REPORT_EVERY = 20


class WeightAverage(Protocol):
    """What the engine needs of a weight average (timm's ModelEmaV3 fits): an update after each optimizer step."""

    def update(self, model: nn.Module) -> None: ...


@dataclass
class StepContext:
    """How forward passes run: device, autocast dtype (None = fp32) and memory format."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    transform: Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]],
    gen: torch.Generator,
    ctx: StepContext,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    frozen: Iterable[nn.Module] = (),
    ema: WeightAverage | None = None,
    on_batch: Callable[[int, float], None] | None = None,
    report_every: int = REPORT_EVERY,
    loss_scale: Callable[[], torch.Tensor | float] | None = None,
    step_context: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> dict[str, float]:
    """Train for one pass over ``batches``; the scheduler (if any) steps once per batch.

    ``frozen`` modules (a frozen backbone) stay in eval mode, so their batch-norm statistics do not drift.
    ``ema`` (a weight average) is updated after every optimizer step. Loss and accuracy add up on the device, so a
    step never waits for the GPU; ``on_batch(images seen, mean loss)`` is called every ``report_every`` steps and
    after the last, the only times the sums are read back. ``loss_scale()`` (data-parallel training,
    fer_bench.engine.distributed) multiplies the loss that is back-propagated, not the one reported; the forward pass
    runs inside ``step_context()`` (there: dropout masks drawn for the global batch).

    Returns:
        ``train_loss`` (sample-weighted mean), ``train_top1`` (on augmented batches, 0–100),
        ``lr`` (the LR of the epoch's last optimizer step) and ``epoch_train_img_s`` (this epoch's end-to-end
        training speed; a run's summary has its own key, so the two never share an MLflow metric).
    """
    model.train()
    for module in frozen:
        module.eval()
    # NOTE: .item() or int() on a device tensor waits for the GPU; once per step it keeps the GPU idle between steps,
    # so the sums stay on the device until the epoch ends. float64, as Python floats are, so the figures match.
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
    correct = torch.zeros((), dtype=torch.int64, device=ctx.device)
    seen, step, lr = 0, 0, optimizer.param_groups[0]["lr"]
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches, 1):
        x, y = transform(x, y, gen)
        x = ctx.prepare(x)
        with ctx.autocast(), step_context() if step_context is not None else contextlib.nullcontext():
            logits = model(x)
            loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        lr = optimizer.param_groups[0]["lr"]  # read before the scheduler sets the next step's LR
        _backward_step(loss if loss_scale is None else loss * loss_scale(), optimizer, model, scaler, grad_clip)
        if ema is not None:
            ema.update(model)
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach().double() * len(y)
        correct += (logits.argmax(1) == (y if y.ndim == 1 else y.argmax(1))).sum()  # y: labels or distributions
        seen += len(y)
        if on_batch is not None and step % report_every == 0:
            on_batch(seen, loss_sum.item() / seen)
    total_loss, total_correct = loss_sum.item(), int(correct)  # the epoch's one wait for the device
    if on_batch is not None and step % report_every:
        on_batch(seen, total_loss / seen)
    elapsed = time.perf_counter() - start
    return {
        "train_loss": total_loss / max(seen, 1),
        "train_top1": 100.0 * total_correct / max(seen, 1),
        "lr": lr,
        "epoch_train_img_s": seen / elapsed if elapsed > 0 else 0.0,
    }


def _backward_step(loss, optimizer, model, scaler, grad_clip) -> None:
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        return
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


@torch.inference_mode()
def predict(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    transform: Callable[[torch.Tensor], torch.Tensor],
    ctx: StepContext,
    tta: str = "none",
    crop: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32, N×K) and labels for every sample, with a test-time augmentation of ``parts.TTA_MODES``."""
    model.eval()
    outs, labels = [], []
    for x, y in batches:
        x = ctx.prepare(transform(x))
        with ctx.autocast():
            logits = _tta_logits(model, x, tta, crop)
        outs.append(logits.float().cpu())
        labels.append(y.cpu())
    return torch.cat(outs).numpy(), torch.cat(labels).numpy()


def _tta_logits(model: nn.Module, x: torch.Tensor, tta: str, crop: int | None) -> torch.Tensor:
    return TTA_MODES.get(tta).load()(model, x, crop)


# The TTA modes of fer_bench.recipes.parts.TTA_MODES: (model, input batch, crop side or None) → logits.
def tta_none(model: nn.Module, x: torch.Tensor, crop: int | None) -> torch.Tensor:
    return model(x)


def tta_hflip(model: nn.Module, x: torch.Tensor, crop: int | None) -> torch.Tensor:
    return (model(x) + model(x.flip(-1))) / 2


def tta_tencrop(model: nn.Module, x: torch.Tensor, crop: int | None) -> torch.Tensor:
    crops = ten_crop(x, crop or round(x.shape[-1] * 40 / 48))  # 40 of 48 px, as Khaireddin & Chen
    return model(crops.flatten(0, 1)).view(10, x.shape[0], -1).mean(0)


def evaluate(model: nn.Module, batches, *, transform, ctx: StepContext, classes: tuple[str, ...], tta: str = "none"):
    """Predict and score: ``top1``, ``macro_f1``, per-class F1... (0–100), plus ``loss``."""
    logits, y = predict(model, batches, transform=transform, ctx=ctx, tta=tta)
    loss = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)))
    return classification_metrics(logits, y, classes) | {"loss": loss}
