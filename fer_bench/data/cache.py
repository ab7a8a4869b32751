"""Decode once: a dataset's decoded arrays are cached under a key derived from its source files.

The cache lives in ``$FER_BENCH_CACHE`` (default ``$XDG_CACHE_HOME/fer-bench`` or ``~/.cache/fer-bench``),
never next to the data, which may be read-only. The key covers every source file's name, size and
mtime, so an edited, added or removed file invalidates it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

CACHE_FORMAT = 1  # bump when the cached layout or decoding changes
ARRAYS = ("images", "labels", "splits")


def default_cache_dir() -> Path:
    if env := os.environ.get("FER_BENCH_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fer-bench"


def source_key(kind: str, root: Path, rel_paths: list[str] | None = None) -> str:
    """Hash a source's identity: absolute path, and name/size/mtime of each file (or of the file itself)."""
    h = hashlib.sha256(f"{CACHE_FORMAT}|{kind}|{root.resolve()}".encode())
    for rel in rel_paths if rel_paths is not None else [""]:
        st = (root / rel).stat() if rel else root.stat()
        h.update(f"|{rel}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def load(cache_dir: Path, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """Map a cached entry in (read-only memory map), or None when absent or unreadable."""
    entry = cache_dir / key
    try:
        meta = json.loads((entry / "meta.json").read_text())
        arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    except (OSError, ValueError):
        return None
    return arrays, meta


def save(cache_dir: Path, key: str, arrays: dict[str, np.ndarray], meta: dict) -> Path | None:
    """Write an entry atomically (temp dir + rename); a cache that cannot be written is skipped, not fatal."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arrays[name]))
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, cache_dir / key)
    except OSError:
        return None
    return cache_dir / key
