"""The registries of the parts a recipe picks by name: losses, optimizers, LR schedules, TTA modes, augmentation ops.

Each entry says what the part is, which recipe fields set it and where its torch code lives (``builder``, a
``module:attribute`` path imported on first use), so this module imports no torch: the recipe schema validates
names against these registries, the CLI takes its choices from them and ``fer-bench ls losses|optimizers|schedules|
tta|augment-ops`` lists them, while the code that builds a part dispatches through the same entry. A name can only
be valid, listed and buildable together; a test checks every builder resolves. Models, datasets, recipes and
corruptions have registries of their own (``fer_bench.models``, ``fer_bench.data``, ``fer_bench.recipes``,
``fer_bench.data.corruptions``).

Example:
    >>> LOSSES.get("soft_ce").takes_distributions
    True
    >>> TTA_MODES.get("tencrop").passes
    10
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

from fer_bench.utils.registry import Registry


@dataclass(frozen=True)
class Part:
    """One registered part. ``builder``: ``"module:attribute"`` of the torch code, None for a part with none."""

    name: str
    description: str
    fields: tuple[str, ...] = ()  # the recipe fields that set it (dotted), beside the field that names it
    builder: str | None = None
    takes_distributions: bool = False  # losses: trains on label distributions (FerData.soft), not class indices
    passes: int = 1  # TTA modes: forward passes per image (the TTA column's cost)
    pipeline: str = "eval"  # TTA modes: the input pipeline it reads (experiment.plan.make_norms: "eval" or "tencrop")
    uses_validation: bool = False  # schedules: steered by the validation metric each epoch
    reference: str = ""

    def load(self) -> Any:
        """The builder's object (imports its module, which may import torch); resolved once per path, since the
        schedule and TTA look theirs up on every batch."""
        if self.builder is None:
            raise ValueError(f"{self.name!r} has no builder")
        return _resolve(self.builder)


@functools.cache
def _resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _registry(kind: str, command: str, *parts: Part) -> Registry[Part]:
    reg: Registry[Part] = Registry(kind, list_hint=f"fer-bench ls {command}")
    for p in parts:
        reg.add(p.name, p)
    return reg


_LOSS_FIELDS = ("loss.label_smoothing", "loss.class_weight_power", "loss.class_weight_clip")

LOSSES = _registry(
    "loss", "losses",
    Part("ce", "cross-entropy on class indices", _LOSS_FIELDS, "fer_bench.engine.builders:cross_entropy"),
    Part("focal", "focal loss, (1 − p_t)^γ · CE", (*_LOSS_FIELDS, "loss.focal_gamma"),
         "fer_bench.engine.builders:focal_loss", reference="Lin et al. 2017"),
    Part("soft_ce", "cross-entropy against label distributions (FER+ crossentropy/probability labels)", _LOSS_FIELDS,
         "fer_bench.engine.builders:soft_cross_entropy", takes_distributions=True, reference="Barsoum et al. 2016"),
)  # fmt: skip

OPTIMIZERS = _registry(
    "optimizer", "optimizers",
    Part("adamw", "AdamW; no weight decay on biases and norm parameters", ("optim.lr", "optim.weight_decay"),
         "fer_bench.engine.builders:adamw", reference="Loshchilov & Hutter 2019"),
    Part("sgd", "SGD with momentum; no weight decay on biases and norm parameters",
         ("optim.lr", "optim.weight_decay", "optim.momentum", "optim.nesterov"), "fer_bench.engine.builders:sgd"),
)  # fmt: skip

_WARMUP = ("schedule.warmup_epochs", "schedule.warmup_fraction")

SCHEDULES = _registry(
    "schedule", "schedules",
    Part("cosine", "linear warm-up, cosine to min_lr_ratio, then the floor held for hold_fraction of the steps",
         (*_WARMUP, "schedule.min_lr_ratio", "schedule.hold_fraction"), "fer_bench.engine.builders:cosine_shape",
         reference="Loshchilov & Hutter 2017"),
    Part("constant", "linear warm-up, then constant", _WARMUP, "fer_bench.engine.builders:constant_shape"),
    Part("plateau", "linear warm-up, then constant, cut by plateau_factor after plateau_patience epochs without a "
         "better validation top-1 (torch's ReduceLROnPlateau rule)",
         (*_WARMUP, "schedule.plateau_factor", "schedule.plateau_patience"), "fer_bench.engine.builders:constant_shape",
         uses_validation=True),
)  # fmt: skip

TTA_MODES = _registry(
    "TTA mode", "tta",
    Part("none", "the plain single-crop forward pass: the headline figure", (), "fer_bench.engine.steps:tta_none"),
    Part("hflip", "mean logits of the image and its mirror", (), "fer_bench.engine.steps:tta_hflip", passes=2),
    Part("tencrop", "mean logits of ten crops (corners, centre, and their mirrors) of 40/48 of the side", (),
         "fer_bench.engine.steps:tta_tencrop", passes=10, pipeline="tencrop", reference="Khaireddin & Chen 2021"),
)  # fmt: skip

# In the order fer_bench.data.augment.BatchAugment applies them; ``ops()`` names each one it runs (0 = off).
AUGMENT_OPS = _registry(
    "augmentation op", "augment-ops",
    Part("to_float", "uint8 → float in [0, 1]"),
    Part("random_resized_crop", "random area and aspect crop, resized back (one bilinear sample with the affine ops)",
         ("augment.crop_scale", "augment.crop_ratio")),
    Part("hflip", "horizontal mirror", ("augment.hflip",)),
    Part("rotate", "rotation by up to ± the angle", ("augment.rotate", "augment.rotate_p")),
    Part("translate", "shift by up to ± the fraction of the side", ("augment.translate", "augment.translate_p")),
    Part("brightness", "brightness factor from [1 − b, 1 + b]", ("augment.brightness",)),
    Part("contrast", "contrast factor from [1 − c, 1 + c]", ("augment.contrast",)),
    Part("ten_crop", "every image gives ten training crops (Khaireddin & Chen)", ("augment.train_crops",)),
    Part("center_crop", "centre crop of a ten-crop recipe's plain input", ("augment.train_crops",)),
    Part("erase", "one random rectangle set to 0 (random erasing)", ("augment.erase_p", "augment.erase_scale"),
         reference="Zhong et al. 2020"),
    Part("to_channels", "grey ↔ RGB to the model's input channels"),
    Part("normalize", "the model's mean and std"),
)  # fmt: skip

PARTS: dict[str, Registry[Part]] = {
    "losses": LOSSES, "optimizers": OPTIMIZERS, "schedules": SCHEDULES, "tta": TTA_MODES, "augment-ops": AUGMENT_OPS,
}  # fmt: skip
