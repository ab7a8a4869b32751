"""Files: atomic JSON writes and cached content digests."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def write_json(path: Path, obj: Any) -> None:
    """Write atomically: a crash never leaves half a result file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file (cached on path, size and mtime, so a suite does not re-read a large weights file)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_DIGESTS[key] = h.hexdigest()
    return _FILE_DIGESTS[key]


SUPERSEDED = "superseded"  # a results folder's rows that a later change invalidated: kept, with why, never read


def row_files(folder: Path, name: str = "result.json") -> list[Path]:
    """Every ``name`` under ``folder``, sorted, except those below a ``superseded/`` folder.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for sub in ("a", "superseded/b"):
        ...     (d / sub).mkdir(parents=True)
        ...     (d / sub / "result.json").write_text("{}")
        >>> [p.parent.name for p in row_files(d)]
        ['a']
    """
    folder = Path(folder)
    return sorted(p for p in folder.rglob(name) if SUPERSEDED not in p.relative_to(folder).parts[:-1])
