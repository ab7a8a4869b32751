"""Carry a FER2013 folder tree to a machine that cannot see it, byte for byte, in one file.

The GPU machine sees only the working tree (64 MiB in all). The Kaggle tree is 35,887 JPEGs of 56.5 MB; as files or
as a tar (512-byte headers) it is too big, and re-encoding the pixels would change what the loader decodes there.
So ``pack`` concatenates the JPEG bytes into ``fer2013.pack`` with an index ``fer2013.pack.csv`` (path, offset,
bytes, sha256), and ``unpack`` writes the same files back and checks every sha256, so the rows there are of the
very files read here. Standard library only: the GPU machine's Python has no fer_bench dependencies installed.

    python scripts/fer2013_pack.py pack ../shared/data/fer2013 .gpu        # here
    python3 scripts/fer2013_pack.py unpack .gpu /tmp/fer2013                # there
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from pathlib import Path

PACK, INDEX = "fer2013.pack", "fer2013.pack.csv"
FIELDS = ("path", "offset", "bytes", "sha256")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _files(src: Path) -> list[str]:
    """Relative paths of every image under train/ and test/, in a fixed order."""
    paths = [p.relative_to(src).as_posix() for d in ("train", "test") for p in (src / d).rglob("*")]
    return sorted(p for p in paths if Path(p).suffix.lower() in IMAGE_SUFFIXES)


def pack(src: Path, dest: Path) -> int:
    """Write ``dest/fer2013.pack`` and its index; return the number of files."""
    rel = _files(src)
    if not rel:
        raise SystemExit(f"error: no images under {src}/train or {src}/test; give the FER2013 folder tree")
    dest.mkdir(parents=True, exist_ok=True)
    offset = 0
    with open(dest / PACK, "wb") as out, open(dest / INDEX, "w", newline="") as idx:
        writer = csv.writer(idx)
        writer.writerow(FIELDS)
        for r in rel:
            data = (src / r).read_bytes()
            out.write(data)
            writer.writerow((r, offset, len(data), hashlib.sha256(data).hexdigest()))
            offset += len(data)
    return len(rel)


def unpack(src: Path, dest: Path) -> int:
    """Write the files of ``src/fer2013.pack`` under ``dest``, checking each sha256; return the number of files."""
    blob = (src / PACK).read_bytes()
    with open(src / INDEX, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        start, n = int(row["offset"]), int(row["bytes"])
        data = blob[start : start + n]
        if len(data) != n or hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise SystemExit(f"error: {src / PACK}: {row['path']} does not match its sha256; pack it again")
        path = dest / row["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("pack", "unpack"))
    p.add_argument("src", type=Path, help="pack: the FER2013 folder tree; unpack: the folder holding the pack")
    p.add_argument("dest", type=Path, help="pack: where the pack goes; unpack: the folder tree to write")
    a = p.parse_args(argv)
    if not a.src.is_dir():
        print(f"error: {a.src} is not a folder", file=sys.stderr)
        return 2
    n = (pack if a.action == "pack" else unpack)(a.src, a.dest)
    print(f"{a.action}ed {n} files: {a.src} -> {a.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
