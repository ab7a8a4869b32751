"""Training state saved after every epoch, atomically, so `fer-bench run --resume` continues a killed run.

Everything that decides what happens next is saved: model, optimizer, schedulers, grad scaler, every RNG
(torch, CUDA, numpy, python, the augmentation generator), the epoch and stage, the early-stop state and
the history. Loaded with ``weights_only=True``: a checkpoint can hold tensors and plain data, never code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_bench.errors import ConfigError


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


def load(path: Path, recipe_hash: str) -> dict[str, Any] | None:
    """The saved state, or None when there is none. A checkpoint of another recipe is an error."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
        raise ConfigError(f"{path}: cannot read the checkpoint ({exc}). Delete it to start the run afresh.") from None
    if state.get("recipe_hash") != recipe_hash:
        raise ConfigError(
            f"{path}: the checkpoint was made with recipe hash {state.get('recipe_hash')}, this run has "
            f"{recipe_hash}. Resume with the same recipe and options, or use another --out."
        )
    return state
