"""Building a registered backbone: its head, its starting weights, and the record of where they came from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fer_bench.models.specs import ModelSpec, get_spec
from fer_bench.models.weights import WeightsInfo, load_weights, pretrained_error, pretrained_info
from fer_bench.utils.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn


def create_model(
    name: str,
    *,
    num_classes: int = 7,
    pretrained: bool = False,
    weights: str | Path | None = None,
    drop_rate: float | None = None,
    allow_partial: bool = False,
) -> tuple[nn.Module, ModelSpec]:
    """Build a backbone with a ``num_classes`` head, optionally with pretrained or local weights.

    A local file must fill every backbone tensor unless ``allow_partial``; :func:`weights_info` then says where
    the starting weights came from and how many tensors they filled.
    """
    spec = get_spec(name)
    from_hub = pretrained and weights is None
    try:
        model = spec.builder(num_classes, spec.in_chans, from_hub, drop_rate)
    except (OSError, RuntimeError, ValueError) as exc:
        if pretrained:
            raise ConfigError(pretrained_error(spec, exc)) from None
        raise
    if weights is not None:
        info = load_weights(model, Path(weights), allow_partial=allow_partial)
    elif from_hub:
        info = pretrained_info(model, num_classes)
    else:
        info = WeightsInfo("scratch", total=len(model.state_dict()))
    model.fer_bench_weights = info  # NOTE: travels with the module, so the runner's row can name it
    return model, spec


def weights_info(model: nn.Module) -> dict:
    """Where ``model``'s starting weights came from, as the result row records it (``scratch`` if unknown).

    Example:
        >>> model, _ = create_model("simple_cnn")
        >>> weights_info(model)["source"], weights_info(model)["loaded_fraction"]
        ('scratch', 0.0)
    """
    info = getattr(model, "fer_bench_weights", None) or WeightsInfo("scratch", total=len(model.state_dict()))
    return info.as_row()


def classifier_params(model: nn.Module) -> set[str]:
    """Names of the classifier's parameters (timm's ``get_classifier``, which our models implement too)."""
    head = model.get_classifier()
    ids = {id(p) for p in head.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}
