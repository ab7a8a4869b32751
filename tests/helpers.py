"""Builders of small, real-format datasets for tests: FER2013 CSVs and Kaggle-style folder trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fer_bench.data.labels import FER2013_CLASSES

USAGES = ("Training", "PublicTest", "PrivateTest")


def write_csv(path: Path, n_per: int = 2, *, icml: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """A FER2013-format CSV with ``n_per`` rows per (class, usage); returns (images, labels, usages)."""
    rng = np.random.default_rng(seed)
    rows, images, labels, usages = [], [], [], []
    for usage in USAGES:
        for label in range(7):
            for _ in range(n_per):
                img = rng.integers(0, 256, (48, 48), dtype=np.uint8)
                images.append(img), labels.append(label), usages.append(usage)
                pix = " ".join(map(str, img.ravel()))
                rows.append(f"{label},{usage},{pix}" if icml else f"{label},{pix},{usage}")
    # The icml_face_data.csv variant orders the columns differently and names them with a leading space.
    header = "emotion, Usage, pixels" if icml else "emotion,pixels,Usage"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return np.stack(images), np.array(labels), usages


def write_tree(root: Path, n_per: int = 2, *, spellings: dict[str, str] | None = None, prefixes: bool = True) -> None:
    """A Kaggle-layout tree: train/<class>/Training_*.png and test/<class>/{Public,Private}Test_*.png."""
    rng = np.random.default_rng(0)
    names = {c: (spellings or {}).get(c, c) for c in FER2013_CLASSES}
    for split, usages in (("train", ("Training",)), ("test", ("PublicTest", "PrivateTest"))):
        for c in FER2013_CLASSES:
            d = root / split / names[c]
            d.mkdir(parents=True, exist_ok=True)
            for usage in usages:
                for i in range(n_per):
                    name = f"{usage}_{i}.png" if prefixes else f"{usage.lower()}{i}.png"
                    Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(d / name)
