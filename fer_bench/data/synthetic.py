"""A built-in, deterministic set of drawn 48×48 faces whose eyes, brows and mouth depend on the emotion.

It exists so every command runs with no download: the demo, the tests and CI train on it. Each face
gets pose (shift, scale, tilt), lighting (level, gradient, contrast) and noise jitter, and its
expression parameters are jittered too, so classes overlap a little and a model must learn shapes,
not memorise one template. A small CNN beats chance (14 %) clearly within a minute on CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fer_bench.data.base import FerData
from fer_bench.data.labels import FER2013_CLASSES, PRIVATE, PUBLIC, TRAIN
from fer_bench.data.spec import DatasetSpec, register

# Expression parameters per class, in FER2013 order (angry, disgust, fear, happy, sad, surprise, neutral).
#                      angry  disg   fear   happy  sad    surpr  neutral
EYE_OPEN = np.array([0.55, 0.45, 1.35, 0.70, 0.80, 1.50, 1.00])  # eye height relative to neutral
BROW_RAISE = np.array([0.07, 0.04, -0.08, 0.00, -0.03, -0.13, 0.00])  # +: lower (towards the eyes)
BROW_TILT = np.array([0.55, 0.30, -0.35, 0.00, -0.55, 0.00, 0.00])  # +: inner ends down (frown)
MOUTH_CURVE = np.array([-0.25, -0.45, -0.10, 0.95, -0.85, 0.00, 0.00])  # +: smile, -: frown
MOUTH_OPEN = np.array([0.00, 0.02, 0.10, 0.04, 0.00, 0.17, 0.00])  # open-mouth half height
MOUTH_WIDTH = np.array([0.24, 0.20, 0.32, 0.36, 0.26, 0.15, 0.25])

# FER2013 Training class frequencies (RECIPES.md), so the synthetic set is imbalanced the same way.
FER2013_TRAIN_COUNTS = np.array([3995, 436, 4097, 7215, 4830, 3171, 4965])


def make_synthetic(n_train: int = 2400, n_public: int = 500, n_private: int = 500, seed: int = 0, size: int = 48):
    """Draw the set. Returns ``(images uint8 (N,size,size), labels int64, splits int8)``.

    Example:
        >>> images, labels, splits = make_synthetic(n_train=70, n_public=14, n_private=14)
        >>> images.shape, images.dtype
        ((98, 48, 48), dtype('uint8'))
    """
    rng = np.random.default_rng(seed)
    labels, splits = [], []
    for split, n in ((TRAIN, n_train), (PUBLIC, n_public), (PRIVATE, n_private)):
        counts = _class_counts(n)
        labels.append(np.repeat(np.arange(len(FER2013_CLASSES)), counts))
        splits.append(np.full(counts.sum(), split, dtype=np.int8))
    y = np.concatenate(labels)
    return _draw(y, rng, size), y.astype(np.int64), np.concatenate(splits)


def _class_counts(n: int) -> np.ndarray:
    # At least 2 % of the set per class so the rarest class (disgust) is still learnable.
    p = np.maximum(FER2013_TRAIN_COUNTS / FER2013_TRAIN_COUNTS.sum(), 0.02)
    counts = np.floor(p / p.sum() * n).astype(int)
    counts[np.argmax(counts)] += n - counts.sum()
    return counts


def _draw(y: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    n = len(y)
    col = lambda a: a.reshape(n, 1, 1)  # noqa: E731
    jit = lambda scale: col(rng.normal(0.0, scale, n))  # noqa: E731
    # Pixel grid in [-1, 1], mapped into face coordinates by the inverse pose (shift, scale, tilt).
    g = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    angle, scale = jit(0.15), col(rng.uniform(0.85, 1.1, n))
    x0, y0 = xx[None] - jit(0.07), yy[None] - jit(0.07)
    u = (np.cos(angle) * x0 + np.sin(angle) * y0) / scale
    v = (-np.sin(angle) * x0 + np.cos(angle) * y0) / scale

    feat = lambda table, s: col(table[y]) + jit(s)  # noqa: E731  (class value + per-face jitter)
    eye_h = np.clip(feat(EYE_OPEN, 0.12), 0.25, None) * 0.09
    brow_y, brow_tilt = -0.42 + feat(BROW_RAISE, 0.025), feat(BROW_TILT, 0.12)
    curve, mouth_open = feat(MOUTH_CURVE, 0.15), np.clip(feat(MOUTH_OPEN, 0.02), 0.0, None)
    width = np.clip(feat(MOUTH_WIDTH, 0.03), 0.08, None)

    face = (u / 0.68) ** 2 + (v / 0.88) ** 2 < 1.0
    ex = np.abs(u) - 0.3  # signed distance from each eye's centre line; <0 towards the nose
    eyes = (ex / 0.13) ** 2 + ((v + 0.18) / eye_h) ** 2 < 1.0
    brows = (np.abs(v - (brow_y - brow_tilt * ex * 0.5)) < 0.035) & (np.abs(ex) < 0.15)
    mouth_line = 0.48 + curve * (width**2 - u**2) * 1.6  # v grows downwards: centre below corners = smile
    in_width = np.abs(u) < width
    mouth = in_width & (
        (np.abs(v - mouth_line) < 0.035) | (np.abs(v - mouth_line) < mouth_open * (1 - (u / width) ** 2))
    )
    nose = (np.abs(u) < 0.03) & (v > -0.05) & (v < 0.22)

    skin, bg = col(rng.uniform(0.55, 0.85, n)), col(rng.uniform(0.1, 0.45, n))
    img = np.where(face, skin, bg)
    dark = col(rng.uniform(0.05, 0.25, n))
    img = np.where(face & (eyes | brows | mouth), dark, img)
    img = np.where(face & nose, img * 0.8, img)
    # Lighting: a linear gradient across the face and a global contrast change, then sensor noise.
    light = 1.0 + jit(0.15) * xx[None] + jit(0.1) * yy[None]
    img = (img * light - 0.5) * col(rng.uniform(0.7, 1.2, n)) + 0.5
    img = img + rng.normal(0.0, 1.0, img.shape).astype(np.float32) * col(rng.uniform(0.01, 0.06, n))
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def read_synthetic(root: Path | None, cache_dir: Path, options: Mapping[str, str] | None = None) -> FerData:
    images, labels, splits = make_synthetic(seed=0)
    return FerData("synthetic", images, labels, splits, classes=FER2013_CLASSES, source="synthetic(seed=0)")


register(DatasetSpec(
    name="synthetic",
    reader=read_synthetic,
    description="built-in drawn faces (7 FER classes, 48×48, deterministic); no download",
    classes=FER2013_CLASSES, channels=1, size=48,
    splits={"train": "train", "public": "public", "private": "private"},
    split_sizes={"train": 2_400, "public": 500, "private": 500},
    citation="fer-bench (fer_bench/data/synthetic.py)",
    needs_data_dir=False,
))  # fmt: skip
