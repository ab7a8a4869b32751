"""Datasets: registered readers that turn a source into an in-memory :class:`FerData`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_bench.data import cache
from fer_bench.data.base import EVAL_SPLITS, FerData, stratified_split, stratified_subset
from fer_bench.data.csv import read_fer2013_csv
from fer_bench.data.folder import GET_FER2013, decode_images, scan_folder_tree
from fer_bench.data.labels import FER2013_CLASSES
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import DataError
from fer_bench.registry import Registry

__all__ = ["DATASETS", "EVAL_SPLITS", "FerData", "load_dataset", "stratified_split", "stratified_subset"]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its reader, label order and what it needs."""

    name: str
    loader: Callable[[Path | None, Path], FerData]
    description: str
    classes: tuple[str, ...] = FER2013_CLASSES
    needs_data_dir: bool = True


DATASETS: Registry[DatasetSpec] = Registry("dataset", list_hint="fer-bench ls datasets")


def dataset(name: str, description: str, *, needs_data_dir: bool = True):
    """Register a reader ``fn(data_dir, cache_dir) -> FerData`` under ``name``."""

    def wrap(fn: Callable[[Path | None, Path], FerData]):
        DATASETS.add(name, DatasetSpec(name, fn, description, needs_data_dir=needs_data_dir))
        return fn

    return wrap


def load_dataset(name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None) -> FerData:
    """Load a registered dataset into memory (decoding once, then from the cache).

    Example:
        >>> data = load_dataset("synthetic")
        >>> data.images.shape[1:], data.classes[0]
        ((48, 48), 'angry')
    """
    spec = DATASETS.get(name)
    root = Path(data_dir).expanduser() if data_dir is not None else None
    if spec.needs_data_dir and root is None:
        raise DataError(f"--dataset {name} needs --data-dir PATH. {GET_FER2013}")
    if root is not None and not root.exists():
        raise DataError(f"data dir {str(root)!r} does not exist (looked at {root.resolve()}). {GET_FER2013}")
    return spec.loader(root, Path(cache_dir) if cache_dir else cache.default_cache_dir())


@dataset("synthetic", "built-in drawn faces (7 FER classes, 48×48, deterministic); no download", needs_data_dir=False)
def _synthetic(root: Path | None, cache_dir: Path) -> FerData:
    images, labels, splits = make_synthetic(seed=0)
    return FerData("synthetic", images, labels, splits, source="synthetic(seed=0)")


CSV_NAMES = ("fer2013.csv", "icml_face_data.csv")


@dataset("fer2013", "FER2013: the Kaggle folder layout (train/, test/) or fer2013.csv / icml_face_data.csv")
def _fer2013(root: Path, cache_dir: Path) -> FerData:
    if root.is_dir() and not any((root / d).is_dir() for d in ("train", "test")):
        root = next((root / n for n in CSV_NAMES if (root / n).is_file()), root)
    return _from_csv("fer2013", root, cache_dir) if root.is_file() else _from_folders("fer2013", root, cache_dir)


def _from_csv(name: str, path: Path, cache_dir: Path) -> FerData:
    key = cache.source_key("csv", path)
    if hit := cache.load(cache_dir, key):
        arrays, meta = hit
        return FerData(
            name, *(np.asarray(arrays[k]) for k in cache.ARRAYS), source=str(path), notes=tuple(meta["notes"])
        )
    images, labels, splits, notes = read_fer2013_csv(path)
    cache.save(cache_dir, key, {"images": images, "labels": labels, "splits": splits}, {"notes": notes})
    return FerData(name, images, labels, splits, source=str(path), notes=notes)


def _from_folders(name: str, root: Path, cache_dir: Path) -> FerData:
    entries, stray = scan_folder_tree(root, FER2013_CLASSES)
    rel = [e[0] for e in entries]
    labels = np.array([e[1] for e in entries], dtype=np.int64)
    splits = np.array([e[2] for e in entries], dtype=np.int8)
    key = cache.source_key("folder", root, rel)
    if hit := cache.load(cache_dir, key):
        arrays, meta = hit
        images, notes = np.asarray(arrays["images"]), tuple(meta["notes"])
    else:
        images, conversions = decode_images(root, rel)
        notes = tuple(f"{n} image(s) converted ({what}) to 48×48 grey" for what, n in sorted(conversions.items()))
        notes += (f"skipped {stray} non-image file(s)",) if stray else ()
        cache.save(cache_dir, key, {"images": images, "labels": labels, "splits": splits}, {"notes": notes})
    return FerData(name, images, labels, splits, source=str(root), notes=notes, paths=tuple(rel))
