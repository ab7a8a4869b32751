"""RAF-DB basic (Li, Deng & Du 2017): aligned 100×100 RGB faces, seven classes, its own train/test split.

The release layout: ``EmoLabel/list_patition_label.txt`` (sic), one ``<name> <label>`` line per image, labels
1–7 = surprise, fear, disgust, happiness, sadness, anger, neutral; names ``train_*`` / ``test_*`` give the split;
``Image/aligned/<stem>_aligned.jpg`` the face. The store keeps 100×100 RGB; the per-batch transform resizes and
converts for the model. No validation split is published: recipes hold out part of train (``data.val_source``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fer_bench.data import cache
from fer_bench.data.base import FerData
from fer_bench.data.folder import decode_images
from fer_bench.data.labels import TEST, TRAIN
from fer_bench.data.spec import DatasetSpec, register
from fer_bench.utils.errors import DataError

CLASSES: tuple[str, ...] = ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")  # labels 1..7
LIST_FILE = "EmoLabel/list_patition_label.txt"
SIZE = 100
GET = (
    "Get RAF-DB basic from its authors (whdeng.cn/RAF), and pass the folder holding EmoLabel/ and Image/ "
    "with --data-dir."
)


def read_list(root: Path) -> list[tuple[str, int, int]]:
    """``(relative image path, label index, split)`` per listed image; a bad line or missing image is a DataError."""
    path = root / LIST_FILE
    if not path.is_file():
        raise DataError(f"{root}: no {LIST_FILE}. {GET}")
    entries = []
    try:
        listing = path.read_bytes().decode("utf-8-sig")  # a byte-order mark is an editor's, not part of a name
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file (undecodable byte at offset {exc.start}); {GET}") from None
    for line, text in enumerate(listing.splitlines(), start=1):
        if not text.strip():
            continue
        parts = text.split()
        split = TRAIN if parts[0].startswith("train_") else TEST if parts[0].startswith("test_") else None
        if len(parts) != 2 or split is None or parts[1] not in {str(k) for k in range(1, 8)}:
            raise DataError(f"{path}, line {line}: expected '<train_|test_name> <1..7>', found {text!r}.")
        rel = f"Image/aligned/{Path(parts[0]).stem}_aligned.jpg"
        if not (root / rel).is_file():
            raise DataError(f"{path}, line {line}: names {parts[0]}, but {root / rel} does not exist. "
                            "Restore the image or remove its line.")  # fmt: skip
        entries.append((rel, int(parts[1]) - 1, split))
    if not entries:
        raise DataError(f"{path}: no images listed. {GET}")
    return entries


def read_rafdb(root: Path, cache_dir: Path, options: Mapping[str, str] | None = None) -> FerData:
    entries = read_list(root)
    rel = [e[0] for e in entries]
    labels = np.array([e[1] for e in entries], dtype=np.int64)
    splits = np.array([e[2] for e in entries], dtype=np.int8)
    key = cache.source_key("rafdb", root, [LIST_FILE, *rel])
    if hit := cache.load(cache_dir, key):
        images, notes = np.asarray(hit[0]["images"]), tuple(hit[1]["notes"])
    else:
        images, conversions = decode_images(root, rel, size=SIZE, channels=3)
        notes = tuple(f"{n} image(s) converted ({what}) to 100×100 RGB" for what, n in sorted(conversions.items()))
        cache.save(cache_dir, key, {"images": images, "labels": labels, "splits": splits}, {"notes": notes})
    return FerData("rafdb", images, labels, splits, classes=CLASSES, source=str(root), notes=notes, paths=tuple(rel))


register(DatasetSpec(
    name="rafdb",
    reader=read_rafdb,
    description="RAF-DB basic: aligned 100×100 RGB faces, 7 classes (release layout, list_patition_label.txt)",
    classes=CLASSES, channels=3, size=SIZE,
    splits={"train": "train_*", "test": "test_*"},
    split_sizes={"train": 12_271, "test": 3_068},
    citation="Li, Deng & Du, Reliable Crowdsourcing and Deep Locality-Preserving Learning for Expression "
             "Recognition in the Wild, CVPR 2017",
    get=GET,
))  # fmt: skip
