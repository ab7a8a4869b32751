"""Builders that turn recipe sections into torch objects: loss, optimizer, schedule, precision."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fer_bench.recipes.schema import LossCfg, OptimCfg, ScheduleCfg


def class_weights(counts: np.ndarray, power: float, clip: float | None = None) -> np.ndarray:
    """w_c ∝ n_c^-power, scaled so the mean weight over training samples is 1 (power 1 = scikit-learn "balanced").

    Example:
        >>> class_weights(np.array([10, 30]), 1.0).round(3).tolist()
        [2.0, 0.667]
    """
    n = np.maximum(counts.astype(np.float64), 1.0)
    w = n**-power
    w *= n.sum() / (n * w).sum()
    return np.minimum(w, clip) if clip is not None else w


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) with optional class weights and label smoothing."""

    def __init__(self, gamma: float, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.gamma, self.label_smoothing = gamma, label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = nn.functional.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing)
        pt = logits.softmax(1).gather(1, target[:, None]).squeeze(1)
        loss = (1 - pt).pow(self.gamma) * ce
        if self.weight is not None:
            w = self.weight[target]
            return (loss * w).sum() / w.sum()
        return loss.mean()


def build_loss(cfg: LossCfg, train_counts: np.ndarray, device: torch.device) -> nn.Module:
    weight = None
    if cfg.class_weight_power > 0 or cfg.class_weight_clip is not None:
        w = class_weights(train_counts, cfg.class_weight_power, cfg.class_weight_clip)
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    if cfg.name == "focal":
        return FocalLoss(cfg.focal_gamma, weight, cfg.label_smoothing).to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors), as timm does."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


OPTIMIZERS = {
    "adamw": lambda groups, c: torch.optim.AdamW(groups, lr=c.lr),
    "sgd": lambda groups, c: torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov),
}


def build_optimizer(cfg: OptimCfg, model: nn.Module) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.name](param_groups(model, cfg.weight_decay), cfg)


def build_scheduler(
    cfg: ScheduleCfg, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-batch schedule: linear warm-up from 1 % of the LR, then cosine to ``min_lr_ratio`` (or constant)."""
    total = max(epochs * steps_per_epoch, 1)
    warmup = min(int(cfg.warmup_epochs * steps_per_epoch), total // 2)  # a short stage keeps half its steps

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        if cfg.name in ("constant", "plateau"):  # plateau: the per-epoch ReduceLROnPlateau does the rest
            return 1.0
        t = min((step - warmup) / max(total - warmup, 1), 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_plateau(cfg: ScheduleCfg, optimizer: torch.optim.Optimizer):
    """ReduceLROnPlateau on validation top-1 (stepped once per epoch) for ``schedule.name: plateau``."""
    if cfg.name != "plateau":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from fer_bench.errors import ConfigError

        raise ConfigError("--device cuda asked for, but torch sees no CUDA device. Use --device cpu or auto.")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> tuple[str, torch.dtype | None]:
    """``auto`` → amp_bf16 on CUDA devices that support it, fp32 elsewhere (CPU AMP is slower on these machines)."""
    if precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "amp_bf16" if bf16 else "fp32"
    dtype = {"fp32": None, "amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}[precision]
    return precision, dtype
