"""The recipe schema: frozen dataclasses that hold every default. YAML and the CLI only override them."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field

from fer_bench.recipes.parts import (  # the registries (torch-free) names are checked in
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    TTA_MODES,
)

TRAIN_CROPS = ("none", "tencrop")
PRECISIONS = ("auto", "fp32", "amp_bf16", "amp_fp16")
VAL_SOURCES = ("train", "public", "private")
EARLY_STOP_SCOPES = ("stage", "run")
EVAL_SPLITS = ("public", "private", "test")
# torch.compile modes (passed to it as they are); "reduce-overhead" adds CUDA graphs where shapes are static
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
MIN_IMG_SIZE = 16  # the smallest input side a recipe or --img-size may ask for
# How the LR follows train.batch_size away from optim.reference_batch_size: the factor for batch / reference.
# "linear": Goyal et al. 2017 (SGD, large batches); "sqrt": Krizhevsky 2014, Hoffer et al. 2017 (often used for Adam).
LR_SCALING = {"none": lambda ratio: 1.0, "linear": lambda ratio: ratio, "sqrt": math.sqrt}


@dataclass(frozen=True)
class DataCfg:
    val_source: str = "train"  # "train": a stratified hold-out of Training; or a test split (Khaireddin: private)
    val_fraction: float = 0.1  # ours: the papers that hold out part of Training do not agree on a fraction
    split_seed: int = 0  # seed of the stratified hold-out (fixed apart from the training seed on purpose)
    limit_train: int | None = None  # stratified subset of the training images, for quick runs


@dataclass(frozen=True)
class InputCfg:
    img_size: int | None = 48  # FER2013's native size; None = the backbone's native input size
    pretrained: bool = False  # timm weights from the hub cache; these machines have no network


@dataclass(frozen=True)
class AugmentCfg:
    """Strength of each batched augmentation op (fer_bench.data.augment); 0 switches an op off."""

    hflip: float = 0.5  # probability
    crop_scale: tuple[float, float] = (0.8, 1.0)  # area fraction of the source kept by the random crop
    crop_ratio: tuple[float, float] = (0.9, 1.1)  # aspect ratio range of the crop
    rotate: float = 10.0  # max |degrees|
    translate: float = 0.1  # max shift, fraction of the image side
    brightness: float = 0.2  # factor drawn from [1-b, 1+b]
    contrast: float = 0.2  # factor drawn from [1-c, 1+c]
    erase_p: float = 0.25  # probability of one erased rectangle
    erase_scale: tuple[float, float] = (0.02, 0.15)  # its area fraction
    rotate_p: float = 1.0  # probability that a sample is rotated at all
    translate_p: float = 1.0  # probability that a sample is shifted at all
    train_crops: str = "none"  # "tencrop": each augmented image gives ten crops of input.img_size (Khaireddin)


@dataclass(frozen=True)
class ModelCfg:
    drop_rate: float | None = None  # dropout before the classifier; None = the backbone's own default


@dataclass(frozen=True)
class StageCfg:
    """One training stage: which parameters train, for how long, at which learning rate."""

    name: str = "train"
    epochs: int | None = None  # None (last stage only): whatever train.epochs leaves after the stages before
    trainable: tuple[str, ...] = ("all",)  # "all", "head" (the classifier) or globs over parameter names
    lr: float | None = None  # None: optim.lr


@dataclass(frozen=True)
class LossCfg:
    name: str = "ce"
    class_weight_power: float = 0.0  # α in w_c ∝ n_c^-α, normalised to mean 1 over samples; 1 = "balanced"
    class_weight_clip: float | None = None  # upper bound on a class weight after normalisation
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0  # used by name: focal only


@dataclass(frozen=True)
class OptimCfg:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    # Batch size as a knob: the LR used is lr × LR_SCALING[lr_scaling](train.batch_size / reference_batch_size)
    # (stage LRs too); the row records the rule and the LR used. "none": lr as written, whatever the batch.
    lr_scaling: str = "none"
    reference_batch_size: int | None = None  # the batch the recipe's lr was chosen for; needed by linear and sqrt


@dataclass(frozen=True)
class ScheduleCfg:
    name: str = "cosine"  # cosine | constant | plateau (constant, cut on a stall); one object owns the LR
    warmup_epochs: float = 0.5  # linear warm-up from 1 % of lr, stepped per batch, at the start of each stage
    # The warm-up as a fraction of each stage's steps instead (then warmup_epochs must be 0): a schedule that keeps
    # its shape whatever the run's length, e.g. when a suite's budget sets the epochs. None: warmup_epochs counts.
    warmup_fraction: float | None = None
    min_lr_ratio: float = 0.01  # cosine floor as a fraction of lr
    # Fraction of each stage's epochs spent at the floor after the cosine reaches it (the cosine spans the rest): a
    # tail in which a converged run gains nothing, so the plateau rule can tell it from one its schedule cut short.
    hold_fraction: float = 0.0
    plateau_factor: float = 0.5  # plateau: multiply the LR by this when validation top-1 stalls...
    plateau_patience: int = 5  # ...for this many epochs


@dataclass(frozen=True)
class TrainCfg:
    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    early_stop_patience: int = 0  # epochs without a better validation macro-F1 before stopping; 0 = off
    early_stop_scope: str = "stage"  # "stage": an early stop ends its stage, later stages still run; "run": all
    precision: str = "auto"  # auto: amp_bf16 on CUDA when supported; on CPU by fer_bench.utils.cpu_caps' rule
    channels_last: bool | None = None  # None: on for CUDA; on CPU by fer_bench.utils.cpu_caps' rule
    grad_clip: float | None = None
    # torch.compile mode for training and validation (one of COMPILE_MODES); None = eager. Checkpoints keep the
    # uncompiled module's keys. Not in the protocol hash: like the device, it changes speed, not what is computed.
    compile: str | None = None
    # Decay of an exponential moving average of the weights, updated after every optimizer step; validation,
    # checkpoint selection and the test use the averaged weights. None = off; e.g. 0.999 (~1000-step horizon).
    ema_decay: float | None = None
    # The average's horizon as a fraction of the run's optimizer steps instead of a fixed decay (then ema_decay must
    # be null): decay = 1 - 1/(fraction x train.epochs x steps per epoch), so the average spans the same share of a
    # short run as of a long one. None: ema_decay alone.
    ema_horizon_fraction: float | None = None
    # timm's EMA warm-up: the decay at update n (0-based) is min(decay, (1 + n) / (10 + n)), so the first updates
    # forget the random initial weights quickly (a horizon of about n/9 steps until it reaches the decay's).
    ema_warmup: bool = False
    # Under torchrun (fer_bench.engine.distributed): batch norms normalise over the global batch, not each rank's slice.
    # One process: plain batch norm, the same computation.
    sync_bn: bool = False


@dataclass(frozen=True)
class EvalCfg:
    split: str = "test"  # public | private | test (= both): the split every result row names
    # test-time augmentations reported beside the plain single-crop figure, which is always the headline
    tta: tuple[str, ...] = ("none", "hflip")
    batch_size: int = 256


@dataclass(frozen=True)
class Recipe:
    name: str = "baseline"
    version: int = 1
    description: str = ""
    data: DataCfg = field(default_factory=DataCfg)
    input: InputCfg = field(default_factory=InputCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    loss: LossCfg = field(default_factory=LossCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    schedule: ScheduleCfg = field(default_factory=ScheduleCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    stages: tuple[StageCfg, ...] = ()  # empty: one stage "train" of train.epochs with every parameter trainable


def stage_plan(r: Recipe) -> list[tuple[StageCfg, int]]:
    """The stages with their epoch counts; the last one without ``epochs`` gets the rest of ``train.epochs``."""
    stages = r.stages or (StageCfg(),)
    fixed = sum(s.epochs or 0 for s in stages)
    return [(s, s.epochs if s.epochs is not None else r.train.epochs - fixed) for s in stages]


# Fields added after protocol v2. At their defaults they are left out of the recipe hash and the protocol
# hash, so every recipe that does not set them keeps the hashes (and the rows, suites and checkpoints keyed on them)
# it had before they existed; set, they enter both.
HASHED_WHEN_SET = (
    "optim.lr_scaling",
    "optim.reference_batch_size",
    "train.compile",
    "train.ema_decay",
    "schedule.hold_fraction",
    "train.sync_bn",
    "schedule.warmup_fraction",
    "train.ema_horizon_fraction",
    "train.ema_warmup",
)


def without_unset_additions(recipe_dict: dict) -> dict:
    """``recipe_dict`` (a resolved recipe as a dict, changed in place) without the :data:`HASHED_WHEN_SET` fields
    that hold their defaults."""
    defaults = dataclasses.asdict(Recipe())
    for dotted in HASHED_WHEN_SET:
        section, leaf = dotted.split(".")
        node = recipe_dict.get(section, {})
        if leaf in node and node[leaf] == defaults[section][leaf]:
            del node[leaf]
    return recipe_dict


def lr_factor(r: Recipe) -> float:
    """What the recipe's LRs are multiplied by at ``train.batch_size`` under ``optim.lr_scaling``.

    Example:
        >>> r = Recipe(optim=OptimCfg(lr_scaling="linear", reference_batch_size=64), train=TrainCfg(batch_size=256))
        >>> lr_factor(r)
        4.0
    """
    if r.optim.lr_scaling == "none" or r.optim.reference_batch_size is None:
        return 1.0
    return float(LR_SCALING[r.optim.lr_scaling](r.train.batch_size / r.optim.reference_batch_size))


def stage_lr(r: Recipe, stage: StageCfg) -> float:
    """The LR ``stage`` trains at: its own (or ``optim.lr``) scaled to the batch size by :func:`lr_factor`."""
    return (stage.lr or r.optim.lr) * lr_factor(r)


def _one_of(registry, value: str, lead: str = "one of") -> str:
    """``one of a, b, c`` in the registry's order, and the closest name when ``value`` looks like a typo of one."""
    close = difflib.get_close_matches(str(value), registry.names(), n=1, cutoff=0.6)
    return f"{lead} {', '.join(registry.names(ordered=True))}" + (f" (did you mean {close[0]!r}?)" if close else "")


def check_values(r: Recipe) -> list[tuple[str, str]]:
    """Range and choice checks that types cannot express: ``[(dotted path, what is allowed)]``."""
    rules: list[tuple[bool, str, str]] = [
        (r.loss.name in LOSSES, "loss.name", _one_of(LOSSES, r.loss.name)),
        (r.optim.name in OPTIMIZERS, "optim.name", _one_of(OPTIMIZERS, r.optim.name)),
        (r.schedule.name in SCHEDULES, "schedule.name", _one_of(SCHEDULES, r.schedule.name)),
        (r.train.precision in PRECISIONS, "train.precision", f"one of {', '.join(PRECISIONS)}"),
        (
            r.train.early_stop_scope in EARLY_STOP_SCOPES,
            "train.early_stop_scope",
            f"one of {', '.join(EARLY_STOP_SCOPES)}",
        ),
        (r.data.val_source in VAL_SOURCES, "data.val_source", f"one of {', '.join(VAL_SOURCES)}"),
        (r.eval.split in EVAL_SPLITS, "eval.split", f"one of {', '.join(EVAL_SPLITS)}"),
        (
            all(t in TTA_MODES for t in r.eval.tta) and len(r.eval.tta) > 0,
            "eval.tta",
            _one_of(TTA_MODES, next((t for t in r.eval.tta if t not in TTA_MODES), ""), lead="a list of"),
        ),
        (r.optim.lr > 0, "optim.lr", "a number > 0"),
        (r.optim.weight_decay >= 0, "optim.weight_decay", "a number >= 0"),
        (r.optim.lr_scaling in LR_SCALING, "optim.lr_scaling", f"one of {', '.join(LR_SCALING)}"),
        (
            r.optim.reference_batch_size is None or r.optim.reference_batch_size >= 1,
            "optim.reference_batch_size",
            "null or an integer >= 1",
        ),
        (
            r.optim.lr_scaling == "none" or r.optim.reference_batch_size is not None,
            "optim.reference_batch_size",
            f"the batch size optim.lr was chosen for (optim.lr_scaling={r.optim.lr_scaling} scales from it)",
        ),
        (
            r.train.compile is None or r.train.compile in COMPILE_MODES,
            "train.compile",
            f"null (eager) or one of {', '.join(COMPILE_MODES)}",
        ),
        (r.train.ema_decay is None or 0 < r.train.ema_decay < 1, "train.ema_decay", "null (off) or in (0, 1)"),
        (0 <= r.loss.label_smoothing < 1, "loss.label_smoothing", "a number in [0, 1)"),
        (r.loss.class_weight_power >= 0, "loss.class_weight_power", "a number >= 0"),
        (r.loss.class_weight_clip is None or r.loss.class_weight_clip > 0, "loss.class_weight_clip", "> 0 or null"),
        (r.train.epochs >= 1, "train.epochs", "an integer >= 1"),
        (r.train.batch_size >= 1, "train.batch_size", "an integer >= 1"),
        (r.eval.batch_size >= 1, "eval.batch_size", "an integer >= 1"),
        (0 <= r.train.seed < 2**32, "train.seed", "an integer in [0, 2**32)"),
        (0 <= r.schedule.warmup_epochs < r.train.epochs, "schedule.warmup_epochs", "in [0, train.epochs)"),
        (
            r.schedule.warmup_fraction is None or 0 <= r.schedule.warmup_fraction <= 0.5,
            "schedule.warmup_fraction",
            "null or a fraction of the steps in [0, 0.5]",
        ),
        (
            r.schedule.warmup_fraction is None or r.schedule.warmup_epochs == 0,
            "schedule.warmup_epochs",
            "0 when schedule.warmup_fraction is set (one warm-up length: set schedule.warmup_epochs: 0)",
        ),
        (
            r.train.ema_horizon_fraction is None or 0 < r.train.ema_horizon_fraction <= 1,
            "train.ema_horizon_fraction",
            "null or a fraction of the run's steps in (0, 1]",
        ),
        (
            r.train.ema_horizon_fraction is None or r.train.ema_decay is None,
            "train.ema_decay",
            "null when train.ema_horizon_fraction is set (one EMA length: set train.ema_decay: null)",
        ),
        (
            not r.train.ema_warmup or r.train.ema_decay is not None or r.train.ema_horizon_fraction is not None,
            "train.ema_warmup",
            "false unless train.ema_decay or train.ema_horizon_fraction turns the average on",
        ),
        (0 < r.schedule.plateau_factor < 1, "schedule.plateau_factor", "a number in (0, 1)"),
        (0 <= r.schedule.hold_fraction < 1, "schedule.hold_fraction", "a number in [0, 1)"),
        (r.augment.train_crops in TRAIN_CROPS, "augment.train_crops", f"one of {', '.join(TRAIN_CROPS)}"),
        (0 <= r.augment.rotate_p <= 1, "augment.rotate_p", "a probability in [0, 1]"),
        (0 <= r.augment.translate_p <= 1, "augment.translate_p", "a probability in [0, 1]"),
        (r.model.drop_rate is None or 0 <= r.model.drop_rate < 1, "model.drop_rate", "null or a number in [0, 1)"),
        (all(s.epochs is not None for s in r.stages[:-1]), "stages", "every stage but the last with epochs set"),
        (
            all(n >= 1 for _, n in stage_plan(r)),
            "train.epochs",
            f"more than the {sum(s.epochs or 0 for s in r.stages[:-1])} epoch(s) of the fixed stages",
        ),
        (all(s.lr is None or s.lr > 0 for s in r.stages), "stages", "each stage's lr null or a number > 0"),
        (0 < r.data.val_fraction < 1, "data.val_fraction", "a number in (0, 1)"),
        (r.data.limit_train is None or r.data.limit_train >= 7, "data.limit_train", "null or an integer >= 7"),
        (
            r.input.img_size is None or r.input.img_size >= MIN_IMG_SIZE,
            "input.img_size",
            f"null or an integer >= {MIN_IMG_SIZE}",
        ),
        (0 <= r.augment.hflip <= 1, "augment.hflip", "a probability in [0, 1]"),
        (0 <= r.augment.erase_p <= 1, "augment.erase_p", "a probability in [0, 1]"),
        (
            0 < r.augment.crop_scale[0] <= r.augment.crop_scale[1] <= 2,
            "augment.crop_scale",
            "[lo, hi] with 0 < lo <= hi <= 2 (above 1 the crop is larger than the image, zero-padded)",
        ),
        (0 < r.augment.crop_ratio[0] <= r.augment.crop_ratio[1], "augment.crop_ratio", "[lo, hi] with 0 < lo <= hi"),
        (0 <= r.augment.rotate <= 180, "augment.rotate", "degrees in [0, 180]"),
        (0 <= r.augment.translate < 1, "augment.translate", "a fraction in [0, 1)"),
    ]
    first = [(path, "a finite number (not inf or nan)") for path in _not_finite(r)]  # before any range reads them
    return first + [(path, allowed) for ok, path, allowed in rules if not ok and path not in dict(first)]


def _not_finite(obj: object, prefix: str = "") -> list[str]:
    """The dotted paths of every float in a recipe (nested sections, lists of numbers) that is inf or nan."""
    found = []
    for f in dataclasses.fields(obj):
        value, path = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            found += _not_finite(value, path + ".")
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(path)
        elif isinstance(value, list | tuple):
            if any(isinstance(v, float) and not math.isfinite(v) for v in value):
                found.append(path)
            for i, v in enumerate(value):
                found += _not_finite(v, f"{path}[{i}].") if dataclasses.is_dataclass(v) else []
    return found
