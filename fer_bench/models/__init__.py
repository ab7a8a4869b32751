"""Backbone registry: each entry is one builder with the metadata that travels with it.

Example:
    >>> from fer_bench.models import create_model
    >>> model, spec = create_model("resnet18", num_classes=7)
    >>> spec.family, spec.in_chans
    ('resnet', 3)
"""

from __future__ import annotations

from fer_bench.models import zoo  # noqa: F401  (registers the built-in entries)
from fer_bench.models.factory import classifier_params, create_model, weights_info
from fer_bench.models.specs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODELS,
    TIMM_PREFIX,
    ModelSpec,
    get_spec,
    register_model,
)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "MODELS", "TIMM_PREFIX", "ModelSpec",
    "classifier_params", "create_model", "get_spec", "register_model", "weights_info",
]  # fmt: skip
