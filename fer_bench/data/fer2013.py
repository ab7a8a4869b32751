"""FER2013 (Goodfellow et al. 2013): the Kaggle folder layout (``train/``, ``test/``) or ``fer2013.csv``.

48×48 grey faces, seven classes in the CSV's order (0 angry … 6 neutral); labels are mapped by class *name* from
folders. Training → train, PublicTest → public, PrivateTest → private; a test folder without the file-name prefix
gives plain ``test`` images.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fer_bench.data import cache
from fer_bench.data.base import FerData
from fer_bench.data.csv import read_fer2013_csv
from fer_bench.data.folder import GET_FER2013, decode_images, scan_folder_tree, skipped_notes
from fer_bench.data.labels import FER2013_CLASSES
from fer_bench.data.spec import DatasetSpec, register

CSV_NAMES = ("fer2013.csv", "icml_face_data.csv")
SIZE = 48


def read_fer2013(root: Path, cache_dir: Path, options: Mapping[str, str] | None = None) -> FerData:
    """The folder tree or the CSV at ``root`` (a folder holding ``fer2013.csv`` counts as the CSV)."""
    if root.is_dir() and not any((root / d).is_dir() for d in ("train", "test")):
        root = next((root / n for n in CSV_NAMES if (root / n).is_file()), root)
    return _from_csv("fer2013", root, cache_dir) if root.is_file() else _from_folders("fer2013", root, cache_dir)


def _from_csv(name: str, path: Path, cache_dir: Path) -> FerData:
    key = cache.source_key("csv", path)
    if hit := cache.load(cache_dir, key):
        arrays, meta = hit
        return FerData(name, *(np.asarray(arrays[k]) for k in cache.ARRAYS), classes=FER2013_CLASSES,
                       source=str(path), notes=tuple(meta["notes"]))  # fmt: skip
    images, labels, splits, notes = read_fer2013_csv(path)
    cache.save(cache_dir, key, {"images": images, "labels": labels, "splits": splits}, {"notes": notes})
    return FerData(name, images, labels, splits, classes=FER2013_CLASSES, source=str(path), notes=notes)


def _from_folders(name: str, root: Path, cache_dir: Path) -> FerData:
    entries, skipped = scan_folder_tree(root, FER2013_CLASSES)
    rel = [e[0] for e in entries]
    labels = np.array([e[1] for e in entries], dtype=np.int64)
    splits = np.array([e[2] for e in entries], dtype=np.int8)
    key = cache.source_key("folder", root, rel)
    if hit := cache.load(cache_dir, key):
        arrays, meta = hit
        images, notes = np.asarray(arrays["images"]), tuple(meta["notes"])
    else:
        images, conversions = decode_images(root, rel, size=SIZE, channels=1)
        notes = tuple(f"{n} image(s) converted ({what}) to 48×48 grey" for what, n in sorted(conversions.items()))
        notes += skipped_notes(skipped)
        cache.save(cache_dir, key, {"images": images, "labels": labels, "splits": splits}, {"notes": notes})
    return FerData(name, images, labels, splits, classes=FER2013_CLASSES, source=str(root), notes=notes,
                   paths=tuple(rel))  # fmt: skip


register(DatasetSpec(
    name="fer2013",
    reader=read_fer2013,
    description="FER2013: the Kaggle folder layout (train/, test/) or fer2013.csv / icml_face_data.csv",
    classes=FER2013_CLASSES, channels=1, size=SIZE,
    splits={"train": "Training", "public": "PublicTest", "private": "PrivateTest",
            "test": "test/ without a PublicTest_/PrivateTest_ prefix"},
    split_sizes={"train": 28_709, "public": 3_589, "private": 3_589},
    citation="Goodfellow et al., Challenges in Representation Learning (ICML 2013 workshop), arXiv 1307.0414",
    get=GET_FER2013,
    reads_file=True,
))  # fmt: skip
