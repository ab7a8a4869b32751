"""Image folders: FER2013's Kaggle layout (`train/<class>/`, `test/<class>/`), decoding, and the `folder` dataset."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fer_bench.data import cache
from fer_bench.data.base import FerData
from fer_bench.data.labels import PRIVATE, PUBLIC, TEST, TRAIN, canonical_class
from fer_bench.data.spec import DatasetSpec, Option, positive_int, register
from fer_bench.utils.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm"}
SPLIT_DIRS = {"train": TRAIN, "training": TRAIN, "test": TEST, "val": TEST, "validation": TEST}
PREFIX_SPLITS = {"Training_": TRAIN, "PublicTest_": PUBLIC, "PrivateTest_": PRIVATE}
Entries = list[tuple[str, int, int]]  # (path relative to the root, label, split) per image
GET_FER2013 = (
    "Get FER2013 from Kaggle ('msambare/fer2013', folders train/ and test/ with one folder per class) "
    "or as `fer2013.csv`, and pass its path with --data-dir; or try --dataset synthetic, which needs no download."
)


def scan_folder_tree(root: Path, classes: tuple[str, ...]) -> tuple[Entries, Counter]:
    """List ``(relative path, label, split)`` for every image under ``root``; also count what was skipped
    (:func:`skipped_notes`: stray files, hidden folders, images in sub-folders of a class folder).

    Raises:
        DataError: no split folders, an unknown or empty class folder, or no test split.
    """
    split_dirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name.lower() in SPLIT_DIRS)
    if not split_dirs:
        raise DataError(f"{root}: expected folders train/ and test/ with one folder per class inside. {GET_FER2013}")
    entries: list[tuple[str, int, int]] = []
    skipped: Counter = Counter()
    for split_dir in split_dirs:
        split = SPLIT_DIRS[split_dir.name.lower()]
        class_dirs = _class_dirs(split_dir, skipped)
        if not class_dirs:
            raise DataError(
                f"{split_dir}: no class folders inside. Expected one folder per class: {', '.join(classes)}."
            )
        for class_dir in class_dirs:
            label = _class_index(class_dir, classes)
            files = _image_files(class_dir, skipped)
            if not files:
                raise DataError(f"{class_dir}: class folder holds no images. Add its images or remove the folder.")
            entries += [(f"{split_dir.name}/{class_dir.name}/{f}", label, _file_split(f, split)) for f in files]
    if not any(s != TRAIN for _, _, s in entries):
        raise DataError(f"{root}: no test/ folder, so there is nothing to evaluate on. {GET_FER2013}")
    return entries, skipped


def _class_index(class_dir: Path, classes: tuple[str, ...]) -> int:
    name = canonical_class(class_dir.name)
    if name is None or name not in classes:
        raise DataError(
            f"{class_dir}: unknown class folder {class_dir.name!r}. Expected one of: {', '.join(classes)} "
            "(also spelled disgusted, fearful, surprised). Rename or remove it."
        )
    return classes.index(name)


# What a folder reader skips, as its notes say it (key of the skipped Counter -> the note's words).
STRAY, HIDDEN_DIRS, NESTED = "non-image file(s)", "hidden folder(s)", "image(s) in sub-folders of class folders"
WHY = {
    HIDDEN_DIRS: "names starting with '.', e.g. .ipynb_checkpoints: not classes",
    NESTED: "a class folder's images must sit directly inside it",
}


def _class_dirs(split_dir: Path, skipped: Counter) -> list[Path]:
    """The class folders of a split folder; hidden ones (``.ipynb_checkpoints``) are counted in ``skipped``."""
    dirs = sorted(d for d in split_dir.iterdir() if d.is_dir())
    skipped[HIDDEN_DIRS] += sum(d.name.startswith(".") for d in dirs)
    return [d for d in dirs if not d.name.startswith(".")]


def _image_files(class_dir: Path, skipped: Counter) -> list[str]:
    """The image files directly inside ``class_dir``; stray and hidden files, hidden folders and the images in
    sub-folders are counted in ``skipped``."""
    images = []
    for entry in sorted(os.scandir(class_dir), key=lambda e: e.name):
        if entry.is_dir():
            hidden = entry.name.startswith(".")
            n = 1 if hidden else sum(p.suffix.lower() in IMAGE_SUFFIXES for p in Path(entry.path).rglob("*"))
            skipped[HIDDEN_DIRS if hidden else NESTED] += n
        elif entry.is_file():
            image = Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".")
            if image:
                images.append(entry.name)
            else:
                skipped[STRAY] += 1
    return images


def skipped_notes(skipped: Counter) -> tuple[str, ...]:
    """One note per kind of thing a folder reader skipped, with the count and the reason."""
    return tuple(f"skipped {n} {what}" + (f" ({WHY[what]})" if what in WHY else "")
                 for what, n in sorted(skipped.items()) if n)  # fmt: skip


def _file_split(name: str, folder_split: int) -> int:
    if folder_split == TRAIN:
        return TRAIN
    return next((s for prefix, s in PREFIX_SPLITS.items() if name.startswith(prefix)), folder_split)


def decode_images(
    root: Path, rel_paths: list[str], size: int = 48, channels: int = 1, workers: int = 4
) -> tuple[np.ndarray, Counter]:
    """Decode every image to ``size``×``size`` uint8, grey (N, S, S) or RGB (N, S, S, 3); count the conversions.

    Raises:
        DataError: an image cannot be decoded (names the file).
    """
    shape = (len(rel_paths), size, size) + ((channels,) if channels > 1 else ())
    out = np.empty(shape, dtype=np.uint8)
    conversions: Counter = Counter()

    def load(i: int) -> None:
        out[i], note = _read(root / rel_paths[i], size, channels)
        if note:
            conversions[note] += 1

    # PIL releases the GIL while decoding, so threads overlap the per-file open/decode latency.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(load, range(len(rel_paths)), chunksize=256))
    return out, conversions


def image_format(path: Path) -> tuple[int, int]:
    """(side, channels) of one image from its header: its width, and 1 for grey modes, 3 for the rest."""
    try:
        with Image.open(path) as img:
            return img.size[0], 1 if img.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "LA") else 3
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc}). Replace or delete the file.") from None


def _read(path: Path, size: int, channels: int) -> tuple[np.ndarray, str]:
    try:
        with Image.open(path) as img:
            img.load()
            return _convert(img, size, channels)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc}). Replace or delete the file.") from None


def _convert(img: Image.Image, size: int, channels: int) -> tuple[np.ndarray, str]:
    notes = []
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        scale = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8))
        notes.append("16-bit→8-bit")
    want = "L" if channels == 1 else "RGB"
    if img.mode != want:
        notes.append(f"{img.mode}→{'grey' if want == 'L' else want}")
        img = img.convert("RGBA").convert("RGB").convert(want) if img.mode in ("P", "LA", "RGBA") else img.convert(want)
    if img.size != (size, size):
        notes.append(f"{img.size[0]}×{img.size[1]}→{size}×{size}")
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8), ", ".join(notes)


# ---- `folder`: any labelled image folder, root/<split>/<class>/<image> ----

FOLDER_SPLITS = {"train": TRAIN, "training": TRAIN, "val": PUBLIC, "valid": PUBLIC, "validation": PUBLIC,
                 "test": PRIVATE}  # fmt: skip


def read_image_folder(root: Path, cache_dir: Path, options: Mapping[str, str]) -> FerData:
    """``root/<split>/<class>/…`` (split train, val or test): classes from ``options['classes']`` (``a+b+c``, in
    that order) or the train folder's class folders (sorted); size and channels from the option or the first image.
    Hidden folders, stray files and images in sub-folders of a class folder are skipped, each kind with a note.

    Raises:
        DataError: no train/ or no held-out folder, a class folder that is not a class, an empty class folder in
            train/. (A class listed in the option without a folder is kept: it holds a place in the label order.)
    """
    split_dirs = {FOLDER_SPLITS[d.name.lower()]: d for d in sorted(root.iterdir())
                  if d.is_dir() and d.name.lower() in FOLDER_SPLITS}  # fmt: skip
    if TRAIN not in split_dirs or len(split_dirs) < 2:
        raise DataError(f"{root}: expected train/ and test/ (val/ optional), one folder per class inside each.")
    classes = _folder_classes(split_dirs[TRAIN], options.get("classes", ""))
    entries, skipped = _folder_entries(split_dirs, classes)
    if not entries:
        raise DataError(f"{root}: no images under {', '.join(d.name for d in split_dirs.values())}.")
    rel = [e[0] for e in entries]
    side, chans = image_format(root / rel[0])
    size = int(options.get("size") or side)
    channels = int(options.get("channels") or chans)
    labels = np.array([e[1] for e in entries], dtype=np.int64)
    splits = np.array([e[2] for e in entries], dtype=np.int8)
    key = cache.source_key(f"image-folder-{size}-{channels}", root, rel)
    if hit := cache.load(cache_dir, key):
        images, notes = np.asarray(hit[0]["images"]), tuple(hit[1]["notes"])
    else:
        images, conversions = decode_images(root, rel, size=size, channels=channels)
        kind = f"{size}×{size} {'grey' if channels == 1 else 'RGB'}"
        notes = tuple(f"{n} image(s) converted ({what}) to {kind}" for what, n in sorted(conversions.items()))
        cache.save(cache_dir, key, {"images": images, "labels": labels, "splits": splits}, {"notes": notes})
    notes += skipped_notes(skipped)
    return FerData("folder", images, labels, splits, classes=classes, source=str(root), notes=notes, paths=tuple(rel))


def _folder_entries(split_dirs: dict[int, Path], classes: tuple[str, ...]) -> tuple[Entries, Counter]:
    """``(relative path, label, split)`` per image, and what was skipped; an empty class folder in train/ is an error
    (a class nobody can learn), one in val/ or test/ is skipped with a note."""
    entries: list[tuple[str, int, int]] = []
    skipped: Counter = Counter()
    for split, split_dir in sorted(split_dirs.items()):
        for class_dir in _class_dirs(split_dir, skipped):
            name = _class_name(class_dir.name)
            if name not in classes:
                raise DataError(
                    f"{class_dir}: unknown class {class_dir.name!r} (classes: {', '.join(classes)}). "
                    "Rename or remove the folder, or list it in --dataset folder:classes=a+b+…."
                )
            files = _image_files(class_dir, skipped)
            if not files and split == TRAIN:
                raise DataError(f"{class_dir}: class folder holds no images. Add its images or remove the folder.")
            skipped["empty class folder(s) outside train/"] += not files
            entries += [(f"{split_dir.name}/{class_dir.name}/{f}", classes.index(name), split) for f in files]
    return entries, skipped


def _class_name(folder: str) -> str:
    return canonical_class(folder) or folder.strip().lower()


def _folder_classes(train_dir: Path, option: str) -> tuple[str, ...]:
    if option:
        return tuple(_class_name(c) for c in option.split("+") if c.strip())
    dirs = [d for d in train_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
    classes = tuple(sorted({_class_name(d.name) for d in dirs}))
    if not classes:
        raise DataError(f"{train_dir}: no class folders inside. Add one folder per class.")
    return classes


def _class_list(value: str) -> str | None:
    """The ``classes`` option's check: names joined by '+', none empty, none twice (also as another spelling)."""
    names = [_class_name(c) for c in value.split("+")]
    if not all(names):
        return "an empty class name; write the names joined by '+', e.g. classes=angry+happy+sad"
    if twice := sorted({n for n in names if names.count(n) > 1}):
        return f"{', '.join(twice)} listed twice; list each class once"
    return None


register(DatasetSpec(
    name="folder",
    reader=read_image_folder,
    description="any labelled image folder: root/{train,val,test}/<class>/*; val → public, test → private",
    classes=None, channels=None, size=None,
    splits={"train": "train/", "public": "val/ (optional)", "private": "test/"},
    citation="(yours)",
    get="Pass the folder holding train/ and test/ (val/ optional), one folder per class inside each.",
    options={
        "classes": Option("", None, "class names in label order, joined by '+' (default: train/'s folders, sorted)",
                          check=_class_list),
        "size": Option("", None, "image side in the store (default: the first image's)", check=positive_int),
        "channels": Option("", ("", "1", "3"), "1 grey or 3 RGB (default: the first image's)"),
    },
))  # fmt: skip
