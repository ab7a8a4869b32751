"""Loading weights: timm's pretrained route (hub cache, offline-aware) and local files."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fer_bench.errors import ConfigError


def pretrained_error(spec, exc: BaseException) -> str:
    return (
        f"cannot load pretrained weights for {spec.name!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}). "
        "With no network, either copy a Hugging Face cache that holds them into ~/.cache/huggingface "
        f"(made elsewhere by `timm.create_model('{spec.timm_name or spec.name}', pretrained=True)`), "
        "or pass a local state-dict file with --weights FILE (.pth, .pt or .safetensors). "
        "Without either, train from scratch (drop --pretrained)."
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch file (``weights_only=True``: no code is executed)."""
    if not path.is_file():
        raise ConfigError(f"weights file {str(path)!r} does not exist. Pass a .pth/.pt/.safetensors state dict.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise ConfigError(f"{path}: cannot read weights ({type(exc).__name__}: {exc}).") from None
    for key in ("state_dict", "model", "model_state"):  # checkpoints nest the weights under one of these
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a state dict (name → tensor), found {type(obj).__name__}.")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in obj.items()}


def load_weights(model: nn.Module, path: Path) -> list[str]:
    """Load matching tensors into ``model``; tensors whose shape differs (a 1000-class head) are skipped.

    Returns:
        The names of the model tensors left at their initial values.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ConfigError(f"{path}: no tensor matches the model's names and shapes; is it for another architecture?")
    model.load_state_dict(matched, strict=False)
    return sorted(set(own) - set(matched))
