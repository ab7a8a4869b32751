"""Builders that turn recipe sections into torch objects: loss, optimizer, schedule, precision."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fer_bench.recipes.parts import LOSSES, OPTIMIZERS, SCHEDULES
from fer_bench.recipes.schema import LossCfg, OptimCfg, ScheduleCfg, TrainCfg
from fer_bench.utils.errors import ConfigError


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


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy against a label distribution q (B, K): per sample −Σ_k q'_k log p_k, q' = q smoothed by ε.

    Hard labels (B,) are taken as one-hot. With class weights w each sample weighs s = Σ_k w_k q_k (its label's
    weight when q is one-hot) and the loss is Σ s·CE / Σ s, so on one-hot targets it equals
    ``nn.CrossEntropyLoss(weight=w, label_smoothing=ε)`` for ε = 0, and torch's probability-target loss without
    weights for any ε.

    Example:
        >>> loss = SoftTargetCrossEntropy()
        >>> round(float(loss(torch.zeros(1, 2), torch.tensor([[0.5, 0.5]]))), 4)  # −log ½
        0.6931
    """

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = logits.shape[1]
        q = nn.functional.one_hot(target, k).to(logits.dtype) if target.ndim == 1 else target.to(logits.dtype)
        smoothed = q * (1 - self.label_smoothing) + self.label_smoothing / k
        ce = -(smoothed * logits.log_softmax(1)).sum(1)
        if self.weight is None:
            return ce.mean()
        s = q @ self.weight.to(logits.dtype)
        return (ce * s).sum() / s.sum()


def check_targets(cfg: LossCfg, data) -> bool:
    """Whether training feeds the loss label distributions: data with them (``FerData.soft``) needs a loss that
    takes them, else ConfigError (training its majority labels instead would silently change the protocol)."""
    if data.soft is not None and not LOSSES.get(cfg.name).takes_distributions:
        takes = [n for n in LOSSES if LOSSES.get(n).takes_distributions]
        raise ConfigError(
            f"--dataset {data.name} trains on label distributions, which loss.name={cfg.name} cannot take. "
            f"Add --set loss.name={takes[0]}, or use the dataset's majority labels."
        )
    return data.soft is not None


# The builders of fer_bench.recipes.parts.LOSSES: (loss section, class weights or None) → the criterion.
def cross_entropy(cfg: LossCfg, weight: torch.Tensor | None) -> nn.Module:
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def focal_loss(cfg: LossCfg, weight: torch.Tensor | None) -> nn.Module:
    return FocalLoss(cfg.focal_gamma, weight, cfg.label_smoothing)


def soft_cross_entropy(cfg: LossCfg, weight: torch.Tensor | None) -> nn.Module:
    return SoftTargetCrossEntropy(weight, cfg.label_smoothing)


def build_loss(cfg: LossCfg, train_counts: np.ndarray, device: torch.device) -> nn.Module:
    """The criterion ``loss.name`` names in :data:`fer_bench.recipes.parts.LOSSES`, with its class weights on
    ``device``."""
    weight = None
    if cfg.class_weight_power > 0 or cfg.class_weight_clip is not None:
        w = class_weights(train_counts, cfg.class_weight_power, cfg.class_weight_clip)
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    return LOSSES.get(cfg.name).load()(cfg, weight).to(device)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors), as timm does."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# The builders of fer_bench.recipes.parts.OPTIMIZERS: (parameter groups, optim section) → the optimizer.
def adamw(groups: list[dict], cfg: OptimCfg) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr)


def sgd(groups: list[dict], cfg: OptimCfg) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def build_optimizer(cfg: OptimCfg, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``optim.name`` names in :data:`fer_bench.recipes.parts.OPTIMIZERS`, over :func:`param_groups`."""
    return OPTIMIZERS.get(cfg.name).load()(param_groups(model, cfg.weight_decay), cfg)


# The shapes of fer_bench.recipes.parts.SCHEDULES: the LR factor at fraction t ∈ [0, 1] of the annealing, after warm-up.
def cosine_shape(t: float, min_lr_ratio: float) -> float:
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def constant_shape(t: float, min_lr_ratio: float) -> float:
    return 1.0


class StageSchedule(torch.optim.lr_scheduler.LRScheduler):
    """The one writer of a stage's learning rate: ``lr = base × warm-up × (cosine | constant) × plateau scale``.

    The warm-up lasts ``schedule.warmup_epochs`` epochs, or ``schedule.warmup_fraction`` of the stage's steps when
    that is set. The cosine runs from the end of the warm-up until ``schedule.hold_fraction`` of the stage's steps
    are left, and the LR holds its floor for those (``hold_fraction: 0``: the cosine spans the stage).

    Stepped once per batch (``step``, after the optimizer's step) and fed the validation top-1 once per epoch
    (``end_epoch``). ``schedule.name: plateau`` is a constant LR whose scale is multiplied by ``plateau_factor``
    after ``plateau_patience`` epochs without a better top-1, with torch's ReduceLROnPlateau rule (relative
    threshold 1e-4, no cooldown); the cuts compound. NOTE: one object writes the LR: a per-batch LambdaLR beside a
    per-epoch ReduceLROnPlateau would be two writers, and the LambdaLR would undo every cut one batch later.

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> sched = StageSchedule(ScheduleCfg(name="plateau", warmup_epochs=0, plateau_patience=0), opt, 10, 3)
        >>> sched.end_epoch(50.0); sched.end_epoch(50.0); sched.end_epoch(50.0); opt.param_groups[0]["lr"]
        0.025
    """

    def __init__(self, cfg: ScheduleCfg, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int) -> None:
        # Plain numbers only: the state dict goes into a checkpoint loaded with weights_only=True.
        self.shape, self.min_lr_ratio = cfg.name, cfg.min_lr_ratio
        self.plateau_factor, self.plateau_patience = cfg.plateau_factor, cfg.plateau_patience
        self.total = max(epochs * steps_per_epoch, 1)
        fraction = cfg.warmup_fraction
        warm = fraction * self.total if fraction is not None else cfg.warmup_epochs * steps_per_epoch
        self.warmup = min(int(warm), self.total // 2)  # a short stage keeps half
        # The cosine ends ``hold_fraction`` of the stage early (never before the warm-up does); the LR holds its floor.
        self.anneal_end = max(self.total - int(cfg.hold_fraction * self.total), self.warmup + 1)
        self.scale, self.best, self.bad_epochs = 1.0, -math.inf, 0
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """Warm-up × cosine (or constant) at batch ``step`` of the stage, without the plateau scale."""
        if step < self.warmup:
            return 0.01 + 0.99 * step / self.warmup  # linear from 1 % of the LR
        t = min((step - self.warmup) / max(self.anneal_end - self.warmup, 1), 1.0)
        return SCHEDULES.get(self.shape).load()(t, self.min_lr_ratio)  # the name, not the function, is state

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) * self.scale for base in self.base_lrs]

    def end_epoch(self, val_top1: float) -> None:
        """Feed the epoch's validation top-1; under ``plateau`` a stall cuts the LR of the next batches."""
        if not SCHEDULES.get(self.shape).uses_validation:
            return
        if val_top1 > self.best * (1 + 1e-4):  # torch's rule (mode max, relative threshold 1e-4)
            self.best, self.bad_epochs = val_top1, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.plateau_patience:
            self.scale *= self.plateau_factor
            self.bad_epochs = 0
            for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
                group["lr"] = lr
            self._last_lr = self.get_lr()


def build_scheduler(
    cfg: ScheduleCfg, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int
) -> StageSchedule:
    """The LR schedule of one stage of ``epochs`` epochs (see StageSchedule)."""
    return StageSchedule(cfg, optimizer, steps_per_epoch, epochs)


def compiled(model: nn.Module, mode: str | None) -> nn.Module:
    """``model`` under ``torch.compile`` in ``mode`` (``train.compile``), or ``model`` itself for None (eager).

    The compiled wrapper shares ``model``'s parameters; checkpoints take ``model.state_dict()``, never the wrapper's
    (its keys carry an ``_orig_mod.`` prefix that resume and ``--weights`` would not find). NOTE: shapes are static
    (``dynamic=False``): the few batch shapes of a run (training, its last partial batch, validation) each compile
    once with constant sizes, and ``reduce-overhead`` captures one CUDA graph per shape.
    """
    if mode is None:
        return model
    return torch.compile(model, mode=mode, dynamic=False)


def ema_decay(cfg: TrainCfg, total_steps: int) -> float | None:
    """The EMA decay a run of ``total_steps`` optimizer steps uses (before any warm-up), or None when it is off.

    ``train.ema_horizon_fraction`` f gives a horizon of f x total_steps updates: decay = 1 - 1/(f x total_steps)
    (at least 0: a horizon under one step is the model itself).

    Example:
        >>> ema_decay(TrainCfg(ema_horizon_fraction=0.1), total_steps=10_000)
        0.999
    """
    if cfg.ema_horizon_fraction is not None:
        return 1.0 - 1.0 / max(cfg.ema_horizon_fraction * total_steps, 1.0)
    return cfg.ema_decay


class StepEma:
    """An exponential moving average of ``model``'s weights and buffers (timm's ModelEmaV3 does the averaging).

    Its ``module`` is an eval-mode copy of ``model``; ``update(model)`` after each optimizer step applies
    ema <- d_n * ema + (1 - d_n) * model, batch-norm statistics included, integer buffers copied, where ``d_n`` is
    :meth:`decay_at` of the update's index n. ``updates`` counts them (a resumed run sets it back).
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        from timm.utils import ModelEmaV3

        self.average = ModelEmaV3(model, decay=decay)
        self.module = self.average.module
        self.decay, self.warmup, self.updates = decay, warmup, 0

    def decay_at(self, n: int) -> float:
        """The decay of update ``n`` (0-based): with warm-up min(decay, (1 + n) / (10 + n)), timm's ModelEma rule."""
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.average.apply_update_(model, self.decay_at(self.updates))
        self.updates += 1


def build_ema(model: nn.Module, cfg: TrainCfg, total_steps: int) -> StepEma | None:
    """The weight average of ``train`` (:func:`ema_decay`, ``train.ema_warmup``) for a run of ``total_steps``
    optimizer steps, or None when it is off."""
    decay = ema_decay(cfg, total_steps)
    return None if decay is None else StepEma(model, decay, cfg.ema_warmup)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device. Use --device cpu or auto.")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> tuple[str, torch.dtype | None]:
    """``auto`` → amp_bf16 on CUDA devices that support it; on CPU the rule of
    :func:`fer_bench.utils.cpu_caps.cpu_choice` (amp_bf16 only with bf16 instructions, a committed grid and a passed
    accuracy check); fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "amp_bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            precision = _cpu_choice().precision if device.type == "cpu" else "fp32"
    dtype = {"fp32": None, "amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}[precision]
    return precision, dtype


def resolve_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """``None`` (the recipe's default) → on for CUDA; on CPU where the rule of
    :func:`fer_bench.utils.cpu_caps.cpu_choice` finds it pays on this processor class; off elsewhere."""
    if channels_last is not None:
        return channels_last
    if device.type == "cpu":
        return _cpu_choice().channels_last
    return device.type == "cuda"


def _cpu_choice():
    from fer_bench.utils import cpu_caps

    return cpu_caps.cpu_choice(cpu_caps.probe())
