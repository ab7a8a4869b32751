"""Loading weights: timm's pretrained route (hub cache, offline-aware) and local files, and what was loaded.

Every model built by :func:`fer_bench.models.create_model` carries a :class:`WeightsInfo`: where its starting
weights came from (scratch, timm's pretrained tag, a file with its sha256) and how many of its tensors they filled.
The result row records it, so a number from a random start and one from ImageNet weights never look alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fer_bench.models.specs import TIMM_PREFIX, get_spec
from fer_bench.utils.errors import ConfigError
from fer_bench.utils.io import file_sha256

SHOWN_MISSING = 5  # how many missing tensor names an error lists


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's starting weights came from.

    Attributes:
        source: ``scratch``, ``timm:<arch>.<tag>`` (timm's pretrained weights) or ``file``.
        path: the weights file (absolute), when one is known.
        sha256: its digest, when the file is known.
        loaded: model tensors (state-dict entries) filled from the weights.
        total: the model's state-dict entries.
        loaded_names: the state-dict names of those tensors (a frozen stage may freeze only these; not on the row).
    """

    source: str
    path: str | None = None
    sha256: str | None = None
    loaded: int = 0
    total: int = 0
    loaded_names: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def loaded_fraction(self) -> float:
        return round(self.loaded / self.total, 4) if self.total else 0.0

    def as_row(self) -> dict:
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "loaded_names"}
        return row | {"loaded_fraction": self.loaded_fraction}


def pretrained_error(spec, exc: BaseException) -> str:
    return (
        f"cannot load pretrained weights for {spec.name!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}). "
        "With no network, either copy a Hugging Face cache that holds them into ~/.cache/huggingface "
        f"(made elsewhere by `timm.create_model('{spec.timm_name or spec.name}', pretrained=True)`), "
        "or pass a local state-dict file with --weights FILE (.pth, .pt or .safetensors). "
        "Without either, train from scratch (drop --pretrained)."
    )


def check_weights_file(path: Path, flag: str = "--weights") -> None:
    """A cheap look at the first bytes, so that a file that is no checkpoint fails before any data loads.

    Raises:
        ConfigError: no such file, or neither a torch.save file (a zip archive or a pickle) nor a safetensors file.
    """
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file. Pass a .pth/.pt/.safetensors state dict.")
    with path.open("rb") as f:
        head = f.read(9)
    # torch.save: a zip archive (PK), or a pickle (protocol byte 0x80); safetensors: an 8-byte length, then '{'
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or head[8:9] == b"{"):
        raise ConfigError(f"{flag} {path}: not a checkpoint (neither a torch.save file nor safetensors). Pass the "
                          ".pth/.pt/.safetensors state dict that training wrote (a run keeps best.pt).")  # fmt: skip


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch file (``weights_only=True``: no code is executed)."""
    if not path.is_file():
        raise ConfigError(f"weights file {str(path)!r} does not exist. Pass a .pth/.pt/.safetensors state dict.")
    check_weights_file(path, "weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise ConfigError(f"{path}: cannot read weights ({one_line(exc)}). Pass a .pth/.pt/.safetensors state dict "
                          "that torch.save or safetensors wrote.") from None  # fmt: skip
    for key in ("state_dict", "model", "model_state"):  # checkpoints nest the weights under one of these
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = type(obj).__name__ if not isinstance(obj, dict) else "a mapping of other things than tensors"
        raise ConfigError(f"{path}: expected a state dict (name → tensor), found {found}.")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in obj.items()}


def one_line(exc: BaseException, limit: int = 160) -> str:
    """``Type: message`` on one line (torch's load errors run over several), cut to ``limit`` characters."""
    text = " ".join(str(exc).split()) or "no details"
    return f"{type(exc).__name__}: {text[:limit]}" + ("…" if len(text) > limit else "")


def sha256_file(path: Path) -> str:
    """sha256 of a weights file: the one cached hasher, so a run never reads a large file twice."""
    return file_sha256(path)


def head_keys(model: nn.Module) -> set[str]:
    """State-dict names of the classifier (``get_classifier()``): a head for another class count never loads."""
    head = model.get_classifier()
    prefix = next((name for name, m in model.named_modules() if m is head and name), None)
    return {k for k in model.state_dict() if prefix and k.startswith(prefix + ".")}


def load_weights(model: nn.Module, path: Path, *, allow_partial: bool = False) -> WeightsInfo:
    """Load the tensors of ``path`` that match ``model`` by name and shape.

    The rule: every backbone tensor (all but the classifier's, which a 1000-class file cannot fill for 7 classes)
    must load; a file that covers less is for another architecture or a truncated save.

    Raises:
        ConfigError: no tensor matches, or some backbone tensor is missing and ``allow_partial`` is False.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ConfigError(f"{path}: no tensor matches the model's names and shapes; is it for another architecture?")
    head = head_keys(model)
    missing = [k for k in own if k not in matched and k not in head]
    if missing and not allow_partial:
        backbone = len(own) - len(head)
        shown = ", ".join(missing[:SHOWN_MISSING]) + (" …" if len(missing) > SHOWN_MISSING else "")
        raise ConfigError(
            f"{path}: {backbone - len(missing)} of the model's {backbone} backbone tensors match the file by name "
            f"and shape; {len(missing)} would stay random (first: {shown}). Pass the weights of this architecture, "
            "or --allow-partial-weights to start from a partial load (the row records the fraction loaded)."
        )
    model.load_state_dict(matched, strict=False)
    return WeightsInfo("file", str(path.resolve()), sha256_file(path), len(matched), len(own), frozenset(matched))


def pretrained_info(model: nn.Module, num_classes: int) -> WeightsInfo:
    """What timm's ``pretrained=True`` loaded: its ``arch.tag``, the cached file and digest where it can be found.

    timm fills every tensor but a classifier whose class count differs from the pretrained one (it is then new).
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    name = f"{cfg.get('architecture', type(model).__name__)}.{cfg['tag']}" if cfg.get("tag") else cfg.get(
        "architecture", type(model).__name__)  # fmt: skip
    own = model.state_dict()
    new_head = head_keys(model) if cfg.get("num_classes") != num_classes else set()
    path = _hub_cache_file(cfg.get("hf_hub_id")) or (cfg.get("file") if cfg.get("file") else None)
    digest = sha256_file(Path(path)) if path and Path(path).is_file() else None
    loaded = frozenset(own) - new_head
    return WeightsInfo(f"timm:{name}", str(path) if path else None, digest, len(loaded), len(own), loaded)


def pretrained_identity(model_name: str) -> dict[str, str | None]:
    """timm's pretrained ``arch.tag`` for ``model_name`` and the sha256 of its cached file, without building the model.

    The protocol hash needs both before a run loads anything (a suite compares protocols before training): one
    model name stands for different weights across timm versions (default tags change) and caches. ``sha256`` is
    None when the file is not cached yet; ``tag`` is None for a model without timm pretrained weights.

    Example:
        >>> pretrained_identity("efficientnet_b2")["tag"]
        'efficientnet_b2.ra_in1k'
    """
    import timm.models

    spec = get_spec(model_name)
    arch = spec.timm_name or (spec.name.removeprefix(TIMM_PREFIX) if spec.name.startswith(TIMM_PREFIX) else None)
    cfg = timm.models.get_pretrained_cfg(arch) if arch else None
    if cfg is None:
        return {"tag": None, "sha256": None}
    path = _hub_cache_file(cfg.hf_hub_id) or cfg.file
    return {
        "tag": f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture,
        "sha256": sha256_file(Path(path)) if path and Path(path).is_file() else None,
    }


def _hub_cache_file(hub_id: str | None) -> str | None:
    """The file timm read from the Hugging Face cache (safetensors first, as timm tries it), if any."""
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo, _, revision = hub_id.partition("@")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str):
            return found
    return None
