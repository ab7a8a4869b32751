"""Training state saved after every epoch, atomically, so `fer-bench run --resume` continues a killed run.

Everything that decides what happens next is saved: model, grad scaler, every RNG (torch, CUDA, numpy,
python, the augmentation generator), the position (epochs done, the next epoch's stage, epochs done in it),
the optimizer and LR schedule inside a stage (at a stage boundary the next stage builds fresh ones, as an
uninterrupted run does), the best-so-far and early-stop state, the history, the recipe hash and the seed.
Loaded with ``weights_only=True``: a checkpoint can hold tensors and plain data, never code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_bench.utils.errors import ConfigError


def rng_state(gen: torch.Generator) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
        "augment": gen.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_tuples(state["python"]))
    gen.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(obj: Any) -> Any:
    """``random.setstate`` wants tuples; a round trip through torch.save may hand back lists."""
    return tuple(_tuples(o) for o in obj) if isinstance(obj, list | tuple) else obj


def save(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file, then rename: a crash mid-write never leaves a broken checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


# Bumped when the saved state changes meaning; an older checkpoint is refused rather than misread.
FORMAT = 2


def load(path: Path, recipe_hash: str, seed: int) -> dict[str, Any] | None:
    """The saved state, or None when there is none.

    Raises:
        ConfigError: a checkpoint of another recipe, another seed or an older format (resuming it would
            silently mix two runs).
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
        from fer_bench.models.weights import one_line

        raise ConfigError(f"{path}: cannot read the checkpoint ({one_line(exc)}). Delete it to start the run "
                          "afresh.") from None  # fmt: skip
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: not a training checkpoint (found {type(state).__name__}). Delete it to start the "
                          "run afresh.")  # fmt: skip
    if state.get("format") != FORMAT:
        raise ConfigError(
            f"{path}: the checkpoint has format {state.get('format', 1)}, this fer-bench reads format {FORMAT}. "
            "Delete it to start the run afresh, or resume with the fer-bench version that wrote it."
        )
    # NOTE: checked apart from the recipe hash, which names the recipe without its seed
    if state.get("seed") != seed:
        raise ConfigError(
            f"{path}: the checkpoint was made with seed {state.get('seed')}, this run has seed {seed}. "
            f"Resume with --seed {state.get('seed')}, or use another --out."
        )
    if state.get("recipe_hash") != recipe_hash:
        raise ConfigError(
            f"{path}: the checkpoint was made with recipe hash {state.get('recipe_hash')}, this run has "
            f"{recipe_hash}. Resume with the same recipe and options, or use another --out."
        )
    return state
