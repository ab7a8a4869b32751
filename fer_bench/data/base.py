"""The in-memory dataset every reader produces: one uint8 image array plus labels and split ids."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fer_bench.data.labels import PRIVATE, PUBLIC, SPLITS, TEST, TRAIN
from fer_bench.utils.errors import DataError

# --split choices -> the split ids they select. "test" is every held-out image (PublicTest + PrivateTest).
EVAL_SPLITS: dict[str, tuple[int, ...]] = {
    "public": (PUBLIC,),
    "private": (PRIVATE,),
    "test": (PUBLIC, PRIVATE, TEST),
}


@dataclass(frozen=True)
class FerData:
    """Decoded faces held in memory.

    Attributes:
        name: dataset name in rows and run folders (registry name, plus any non-default option).
        images: uint8 array at the dataset's native size and channels: (N, H, W) grey or (N, H, W, 3) RGB.
            The per-batch transform (:mod:`fer_bench.data.augment`) resizes and converts for the model.
        labels: int64 array (N,), indices into ``classes`` (FER+: the majority label).
        splits: int8 array (N,), ids from :data:`fer_bench.data.labels.SPLITS`.
        classes: class names in the dataset's own label order.
        source: where the data came from (a path, or the generator and its seed).
        notes: one-line remarks from loading (converted images, skipped files, rows left out...).
        paths: per-sample relative file paths when read from a folder tree, else empty.
        soft: float32 (N, len(classes)) label distributions to train on (FER+ crossentropy mode), else None;
            validation and test are always scored on ``labels``.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    classes: tuple[str, ...]
    source: str = ""
    notes: tuple[str, ...] = ()
    paths: tuple[str, ...] = field(default=(), repr=False)
    soft: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        """Channels of the store: 1 for (N, H, W), else the last axis."""
        return 1 if self.images.ndim == 3 else int(self.images.shape[-1])

    def train_targets(self, idx: np.ndarray) -> np.ndarray:
        """What the loss sees for training samples ``idx``: label distributions when the data has them, else labels."""
        return self.labels[idx] if self.soft is None else self.soft[idx]

    def split_indices(self, split: str) -> np.ndarray:
        """Indices of the evaluation split ``public``, ``private``, ``test`` or ``train``."""
        ids = (TRAIN,) if split == "train" else EVAL_SPLITS[split]
        idx = np.flatnonzero(np.isin(self.splits, ids))
        if len(idx) == 0:
            raise DataError(self._missing_split_message(split))
        return idx

    def _missing_split_message(self, split: str) -> str:
        present = ", ".join(SPLITS[s] for s in np.unique(self.splits)) or "none"
        from fer_bench.data.spec import DATASETS

        base = self.name.split("-")[0]
        spec = DATASETS.get(base) if base in DATASETS else None
        if spec is not None and split not in spec.splits and split != "test":  # e.g. RAF-DB: train and test only
            have = ", ".join(f"{ours} ({theirs})" for ours, theirs in spec.splits.items())
            return f"{self.source}: {base} has no {split} split (its splits: {have}). Use --split test."
        if split in ("public", "private") and (self.splits == TEST).any():
            return (
                f"{self.source}: the test images carry no PublicTest/PrivateTest origin (file names without the "
                f"`PublicTest_`/`PrivateTest_` prefix and no Usage column), so --split {split} cannot be built. "
                "Use --split test, or a copy whose names keep the prefix."
            )
        return f"{self.source}: no images in split {split!r} (splits present: {present})."

    def class_counts(self, idx: np.ndarray | None = None) -> np.ndarray:
        labels = self.labels if idx is None else self.labels[idx]
        return np.bincount(labels, minlength=len(self.classes))


def stratified_split(labels: np.ndarray, idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (kept, held_out) with ``fraction`` of every class held out.

    The held-out total is exactly ``round(len(idx) * fraction)`` (largest-remainder allocation over
    classes), unless a class needs its one sample on each side. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels[idx], return_counts=True)
    quota = counts * fraction
    n_held = np.floor(quota).astype(int)
    extra = int(round(len(idx) * fraction)) - n_held.sum()
    n_held[np.argsort(-(quota - n_held), kind="stable")[:extra]] += 1
    n_held = np.where(counts >= 2, np.clip(n_held, 1, counts - 1), n_held)
    kept, held = [], []
    for c, k in zip(classes, n_held, strict=True):
        members = rng.permutation(idx[labels[idx] == c])
        held.append(members[:k])
        kept.append(members[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def stratified_subset(labels: np.ndarray, idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A class-proportional subset of ``n`` indices out of ``idx`` (all of ``idx`` if n >= len)."""
    if n >= len(idx):
        return idx
    _, subset = stratified_split(labels, idx, n / len(idx), seed)
    return subset
