"""Which parameters a recipe stage trains, and which frozen tensors the starting weights left random."""

from __future__ import annotations

import fnmatch

import torch

from fer_bench.models import classifier_params
from fer_bench.models.weights import SHOWN_MISSING
from fer_bench.recipes.checks import scratch_variant
from fer_bench.recipes.schema import Recipe
from fer_bench.utils.errors import ConfigError


def set_trainable(model: torch.nn.Module, patterns: tuple[str, ...]) -> list[torch.nn.Module]:
    """Train only the parameters matching ``patterns`` ("all", "head" or name globs); return the frozen modules.

    Raises:
        ConfigError: a glob that matches no parameter (a typo would silently freeze the model).
    """
    keep = trainable_names(model, patterns)
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))
            and not any(p.requires_grad for p in m.parameters(recurse=False))]  # fmt: skip


def trainable_names(model: torch.nn.Module, patterns: tuple[str, ...]) -> set[str]:
    """Names of the parameters that ``patterns`` ("all", "head" or name globs) train; see :func:`set_trainable`."""
    names = [n for n, _ in model.named_parameters()]
    keep: set[str] = set()
    for pat in patterns:
        match = set(names) if pat == "all" else classifier_params(model) if pat == "head" else set(
            fnmatch.filter(names, pat))  # fmt: skip
        if not match:
            raise ConfigError(f"stage trainable pattern {pat!r} matches no parameter of the model "
                              f"(names look like {names[0]!r} … {names[-1]!r}).")  # fmt: skip
        keep |= match
    return keep


def frozen_unloaded(model: torch.nn.Module, stages) -> list[str]:
    """State-dict entries that a stage of ``stages`` (the recipe's stage plan) freezes although neither the starting
    weights nor an earlier stage set them.

    Frozen are a stage's untrained parameters and the buffers of its frozen modules (they stay in eval mode, so
    their batch-norm statistics never update; ``num_batches_tracked`` is read by no eval-mode figure). An entry a
    previous stage trained is no longer random. Loaded names come from the model's WeightsInfo (none: scratch).
    """
    info = getattr(model, "fer_bench_weights", None)
    settled = set(info.loaded_names if info else ())  # loaded, or trained by an earlier stage
    unloaded: dict[str, None] = {}  # ordered set: the message lists the first names in model order
    for stage, _ in stages:
        keep = trainable_names(model, stage.trainable)
        frozen = [n for n, _ in model.named_parameters() if n not in keep]
        for mname, module in model.named_modules():
            own = [f"{mname}.{n}" if mname else n for n, _ in module.named_parameters(recurse=False)]
            if own and not any(n in keep for n in own):
                frozen += [f"{mname}.{b}" if mname else b for b, _ in module.named_buffers(recurse=False)
                           if b != "num_batches_tracked"]  # fmt: skip
        unloaded |= dict.fromkeys(n for n in frozen if n not in settled)
        settled |= set(model.state_dict()) - set(frozen)
    return list(unloaded)


def frozen_unloaded_message(recipe: Recipe, unloaded: list[str]) -> str:
    variant = scratch_variant(recipe)
    alt = f", or use its from-scratch variant (--recipe {variant})" if variant else ""
    shown = ", ".join(unloaded[:SHOWN_MISSING]) + (" …" if len(unloaded) > SHOWN_MISSING else "")
    return (
        f"recipe {recipe.name!r} keeps {len(unloaded)} frozen tensors that the starting weights did not fill "
        f"(first: {shown}); frozen, they would stay random. Pass --weights FILE holding them (weights of this "
        f"architecture) or --pretrained{alt}. --allow-partial-weights does not cover frozen layers."
    )
