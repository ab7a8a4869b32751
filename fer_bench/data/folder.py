"""Readers for image-folder exports: FER2013's Kaggle layout (`train/<class>/`, `test/<class>/`) and the like."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fer_bench.data.labels import PRIVATE, PUBLIC, TEST, TRAIN, canonical_class
from fer_bench.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}
SPLIT_DIRS = {"train": TRAIN, "training": TRAIN, "test": TEST, "val": TEST, "validation": TEST}
PREFIX_SPLITS = {"Training_": TRAIN, "PublicTest_": PUBLIC, "PrivateTest_": PRIVATE}
GET_FER2013 = (
    "Get FER2013 from Kaggle ('msambare/fer2013', folders train/ and test/ with one folder per class) "
    "or as `fer2013.csv`, and pass its path with --data-dir; or try --dataset synthetic, which needs no download."
)


def scan_folder_tree(root: Path, classes: tuple[str, ...]) -> tuple[list[tuple[str, int, int]], int]:
    """List ``(relative path, label, split)`` for every image under ``root``; also count skipped stray files.

    Raises:
        DataError: no split folders, an unknown or empty class folder, or no test split.
    """
    split_dirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name.lower() in SPLIT_DIRS)
    if not split_dirs:
        raise DataError(f"{root}: expected folders train/ and test/ with one folder per class inside. {GET_FER2013}")
    entries: list[tuple[str, int, int]] = []
    stray = 0
    for split_dir in split_dirs:
        split = SPLIT_DIRS[split_dir.name.lower()]
        class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir())
        if not class_dirs:
            raise DataError(
                f"{split_dir}: no class folders inside. Expected one folder per class: {', '.join(classes)}."
            )
        for class_dir in class_dirs:
            label = _class_index(class_dir, classes)
            files, n_stray = _image_files(class_dir)
            if not files:
                raise DataError(f"{class_dir}: class folder holds no images. Add its images or remove the folder.")
            stray += n_stray
            entries += [(f"{split_dir.name}/{class_dir.name}/{f}", label, _file_split(f, split)) for f in files]
    if not any(s != TRAIN for _, _, s in entries):
        raise DataError(f"{root}: no test/ folder, so there is nothing to evaluate on. {GET_FER2013}")
    return entries, stray


def _class_index(class_dir: Path, classes: tuple[str, ...]) -> int:
    name = canonical_class(class_dir.name)
    if name is None or name not in classes:
        raise DataError(
            f"{class_dir}: unknown class folder {class_dir.name!r}. Expected one of: {', '.join(classes)} "
            "(also spelled disgusted, fearful, surprised). Rename or remove it."
        )
    return classes.index(name)


def _image_files(class_dir: Path) -> tuple[list[str], int]:
    names = sorted(e.name for e in os.scandir(class_dir) if e.is_file())
    images = [n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    return images, len(names) - len(images)


def _file_split(name: str, folder_split: int) -> int:
    if folder_split == TRAIN:
        return TRAIN
    return next((s for prefix, s in PREFIX_SPLITS.items() if name.startswith(prefix)), folder_split)


def decode_images(root: Path, rel_paths: list[str], size: int = 48, workers: int = 4) -> tuple[np.ndarray, Counter]:
    """Decode every image to ``size``×``size`` grey uint8; count the conversions that were needed.

    Raises:
        DataError: an image cannot be decoded (names the file).
    """
    out = np.empty((len(rel_paths), size, size), dtype=np.uint8)
    conversions: Counter = Counter()

    def load(i: int) -> None:
        out[i], note = _read_grey(root / rel_paths[i], size)
        if note:
            conversions[note] += 1

    # PIL releases the GIL while decoding, so threads overlap the per-file open/decode latency.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(load, range(len(rel_paths)), chunksize=256))
    return out, conversions


def _read_grey(path: Path, size: int) -> tuple[np.ndarray, str]:
    try:
        with Image.open(path) as img:
            img.load()
            return _to_grey(img, size)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc}). Replace or delete the file.") from None


def _to_grey(img: Image.Image, size: int) -> tuple[np.ndarray, str]:
    notes = []
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        scale = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8))
        notes.append("16-bit→8-bit")
    if img.mode != "L":
        notes.append(f"{img.mode}→grey")
        img = img.convert("RGBA").convert("RGB").convert("L") if img.mode in ("P", "LA", "RGBA") else img.convert("L")
    if img.size != (size, size):
        notes.append(f"{img.size[0]}×{img.size[1]}→{size}×{size}")
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8), ", ".join(notes)
