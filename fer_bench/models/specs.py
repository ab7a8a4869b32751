"""The backbone registry: a spec per backbone (what it is, what input it expects) and the timm fallback."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fer_bench.utils.errors import ConfigError
from fer_bench.utils.registry import Registry

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class ModelSpec:
    """What a backbone is and what input it expects.

    Attributes:
        name: registry key.
        builder: ``fn(num_classes, in_chans, pretrained, drop_rate) -> nn.Module`` (drop_rate None: its default).
        source: ``timm``, ``torchvision`` or ``ours``.
        family: ``vgg``, ``resnet``, ``efficientnet``...
        input_size: native input side in pixels (recipes may override).
        in_chans: input channels the model is built with (grey is repeated to 3 for RGB backbones).
        mean, std: per-channel normalisation on the [0, 1] scale.
        paper: where the architecture (or its FER recipe) comes from.
        default_recipe: the recipe ``fer-bench run --models NAME`` uses.
        params: declared parameter count with a 7-class head (checked against the built model in tests).
        timm_name: the timm architecture, for timm-sourced models.
    """

    name: str
    builder: Callable[[int, int, bool, float | None], nn.Module]
    source: str
    family: str
    input_size: int
    in_chans: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    paper: str = ""
    default_recipe: str = "baseline"
    params: int | None = None
    timm_name: str | None = None


MODELS: Registry[ModelSpec] = Registry("model", list_hint="fer-bench ls models")


def register_model(name: str, **meta) -> Callable:
    """Decorator: register ``builder(num_classes, in_chans, pretrained, drop_rate)`` under ``name``."""

    def wrap(builder: Callable[[int, int, bool, float | None], nn.Module]):
        MODELS.add(name, ModelSpec(name=name, builder=builder, **meta))
        return builder

    return wrap


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered backbone, or of any timm architecture given as ``timm:<name>``."""
    if name.startswith(TIMM_PREFIX):
        return _timm_spec(name[len(TIMM_PREFIX) :])
    if name not in MODELS and _is_timm_model(name):
        raise ConfigError(f"unknown model {name!r}. It is a timm architecture: pass it as 'timm:{name}'.")
    return MODELS.get(name)


def _is_timm_model(name: str) -> bool:
    import timm

    return timm.is_model(name.split(".")[0])


def _timm_spec(arch: str) -> ModelSpec:
    import timm

    if not timm.is_model(arch.split(".")[0]):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise ConfigError(f"unknown timm model {arch!r}.{hint} `python -c 'import timm; print(timm.list_models())'`.")
    cfg = timm.get_pretrained_cfg(arch) if arch.count(".") else None
    cfg = cfg or _default_cfg(arch)
    size = int(getattr(cfg, "input_size", (3, 224, 224))[-1]) if cfg else 224
    base = ModelSpec(
        name=TIMM_PREFIX + arch, builder=_timm_builder(arch), source="timm", family="timm", input_size=size
    )
    if cfg is not None:
        base = replace(base, mean=tuple(cfg.mean), std=tuple(cfg.std))
    return base


def _default_cfg(arch: str):
    import timm

    tags = [m for m in timm.list_pretrained(arch + ".*")]
    return timm.get_pretrained_cfg(tags[0]) if tags else None


def _timm_builder(arch: str) -> Callable[[int, int, bool, float | None], nn.Module]:
    def build(num_classes: int, in_chans: int, pretrained: bool, drop_rate: float | None = None) -> nn.Module:
        import timm

        extra = {} if drop_rate is None else {"drop_rate": drop_rate}
        return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **extra)

    return build
