"""Dataset audit: counts, exact duplicates (by pixel content), train/test leakage, conflicting labels, blank images.

Also builds a *leakage-free protocol*: the content hashes of test images that have an identical training
image, which `fer-bench run --protocol FILE` drops from evaluation (and names in every result row).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench.data.base import FerData
from fer_bench.data.labels import SPLITS, TRAIN
from fer_bench.utils.errors import DataError

_HASHES: dict[int, tuple[np.ndarray, list[str]]] = {}  # id(images) -> (images, their hashes): one pass per array


def content_hashes(images: np.ndarray) -> list[str]:
    """A short digest of each image's pixels (equal digests = identical pixels); computed once per in-memory array
    (a suite cell's splits and an audit share it)."""
    hit = _HASHES.get(id(images))
    if hit is not None and hit[0] is images:
        return hit[1]
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    hashes = [hashlib.blake2b(row.tobytes(), digest_size=12).hexdigest() for row in flat]
    _HASHES[id(images)] = (images, hashes)
    return hashes


@dataclass(frozen=True)
class Audit:
    counts: dict[str, dict[str, int]]  # split -> class -> n
    duplicate_groups: list[list[int]]  # indices of identical images, groups of 2+
    leaked_test: list[int]  # test images with an identical training image
    conflicting_groups: list[list[int]]  # duplicate groups whose labels disagree
    blank: list[int]  # constant images (every pixel the same value)
    hashes: list[str]
    splits: np.ndarray

    def summary(self) -> dict[str, Any]:
        redundant = sum(len(g) - 1 for g in self.duplicate_groups)
        return {
            "images": sum(sum(c.values()) for c in self.counts.values()),
            "duplicate_groups": len(self.duplicate_groups),
            "redundant_copies": redundant,
            "test_images_with_identical_train_image": len(self.leaked_test),
            "train_test_groups": sum(1 for g in self.duplicate_groups if self._spans_train_and_test(g)),
            "conflicting_label_groups": len(self.conflicting_groups),
            "blank_images": len(self.blank),
        }

    def _spans_train_and_test(self, group: list[int]) -> bool:
        s = self.splits[group]
        return bool((s == TRAIN).any() and (s != TRAIN).any())


def audit(data: FerData) -> Audit:
    hashes = content_hashes(data.images)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        groups[h].append(i)
    dups = [g for g in groups.values() if len(g) > 1]
    train_hashes = {hashes[i] for i in np.flatnonzero(data.splits == TRAIN)}
    leaked = [int(i) for i in np.flatnonzero(data.splits != TRAIN) if hashes[i] in train_hashes]
    conflicting = [g for g in dups if len(set(data.labels[g].tolist())) > 1]
    flat = data.images.reshape(len(data), -1)
    blank = np.flatnonzero(flat.min(1) == flat.max(1)).tolist()
    counts = {
        SPLITS[s]: {c: int(n) for c, n in zip(data.classes, data.class_counts(np.flatnonzero(data.splits == s)),
                                              strict=True)}
        for s in np.unique(data.splits)
    }  # fmt: skip
    return Audit(counts, dups, leaked, conflicting, blank, hashes, data.splits)


def describe(data: FerData, idx: int) -> str:
    where = data.paths[idx] if data.paths else f"row {idx + 2}"
    return f"{where} ({SPLITS[data.splits[idx]]}, {data.classes[data.labels[idx]]})"


def write_protocol(data: FerData, result: Audit, path: Path) -> dict[str, Any]:
    """A leakage-free protocol file: drop every test image that has an identical training image."""
    drop = sorted({result.hashes[i] for i in result.leaked_test})
    proto = {"name": path.stem, "kind": "drop-test-duplicates-of-train", "dataset": data.name,
             "source": data.source, "drop_test_hashes": drop, "n_dropped_images": len(result.leaked_test)}  # fmt: skip
    path.write_text(json.dumps(proto, indent=1))
    return proto


def load_protocol(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        proto = json.loads(p.read_text())
        proto["drop_test_hashes"] = set(proto["drop_test_hashes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{p}: not a protocol file ({exc}). Make one with `fer-bench data check --write-protocol {p}`."
        ) from None
    return proto
