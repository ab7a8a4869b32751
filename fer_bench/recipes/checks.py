"""Checks that need more than the recipe's own values: what a recipe asks of the weights a model starts from."""

from __future__ import annotations

from fer_bench.recipes import list_recipes
from fer_bench.recipes.schema import Recipe

SCRATCH_SUFFIX = "-scratch"  # a paper recipe's from-scratch variant: <recipe>-scratch.yaml


def frozen_stages(recipe: Recipe) -> list[str]:
    """Names of the stages that train only part of the model (``trainable`` without ``all``)."""
    return [s.name for s in recipe.stages if "all" not in s.trainable]


def scratch_variant(recipe: Recipe) -> str | None:
    """The built-in from-scratch variant of ``recipe`` (``<name>-scratch``), if one ships."""
    name = recipe.name + SCRATCH_SUFFIX
    return name if name in list_recipes() else None


def frozen_without_weights(recipe: Recipe, has_weights: bool) -> str | None:
    """Why ``recipe`` cannot start without loaded weights, or None when it can.

    A stage that freezes part of a model trains a head on whatever the frozen part holds; with no pretrained or
    local weights that is random initialisation, and the figure says nothing about the recipe
    (insideout-effnetv2s reaches 22.5 % on FER2013 on a frozen random EfficientNetV2-S: results/fer2013-cpu/).

    Example:
        >>> from fer_bench.recipes import load_recipe
        >>> frozen_without_weights(load_recipe("insideout-effnetv2s"), has_weights=True) is None
        True
    """
    stages = frozen_stages(recipe)
    if not stages or has_weights:
        return None
    variant = scratch_variant(recipe)
    alt = f", or use its from-scratch variant (--recipe {variant})" if variant else ""
    return (
        f"recipe {recipe.name!r} freezes part of the model in stage(s) {', '.join(stages)}, but the model starts "
        f"from random weights: the frozen layers would stay random. Pass --pretrained (input.pretrained=true) or "
        f"--weights FILE{alt}."
    )
