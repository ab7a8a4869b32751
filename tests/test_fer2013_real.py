"""Reads the real FER2013 in ../shared/data/fer2013 (skipped when absent) and checks its published counts."""

from __future__ import annotations

import numpy as np
import pytest

from fer_bench.data import load_dataset
from fer_bench.data.labels import FER2013_CLASSES, PRIVATE, PUBLIC, TRAIN

pytestmark = pytest.mark.real_data

# ../shared/data/fer2013/README.md, in FER2013 label order (angry, disgust, fear, happy, sad, surprise, neutral).
COUNTS = {
    TRAIN: [3995, 436, 4097, 7215, 4830, 3171, 4965],
    PUBLIC: [467, 56, 496, 895, 653, 415, 607],
    PRIVATE: [491, 55, 528, 879, 594, 416, 626],
}


def test_all_images_load_with_the_published_counts(real_fer2013):
    data = load_dataset("fer2013", real_fer2013)
    assert data.images.shape == (35_887, 48, 48) and data.images.dtype == np.uint8
    for split, counts in COUNTS.items():
        assert np.bincount(data.labels[data.splits == split], minlength=7).tolist() == counts, split
    assert len(data.split_indices("test")) == 7_178
    # Spot checks against the README's quirks: 12 all-black images, the same ones as listed there.
    black = [data.paths[i] for i in np.flatnonzero(data.images.reshape(len(data), -1).max(1) == 0)]
    assert len(black) == 12 and "test/angry/PublicTest_5543497.jpg" in black
    assert FER2013_CLASSES[data.labels[data.paths.index("train/neutral/Training_89335926.jpg")]] == "neutral"


def test_data_check_reports_the_known_quirks(real_fer2013, tmp_path):
    """../shared/data/fer2013/README.md: 568 leaked test images, 57 conflicting groups, 12 black images."""
    from fer_bench.data.audit import audit, write_protocol

    data = load_dataset("fer2013", real_fer2013)
    summary = audit(data).summary()
    assert summary["test_images_with_identical_train_image"] == 568
    assert summary["train_test_groups"] == 531
    assert summary["conflicting_label_groups"] == 57
    assert summary["blank_images"] == 12
    assert summary["duplicate_groups"] == 1516 and summary["redundant_copies"] == 1853
    proto = write_protocol(data, audit(data), tmp_path / "dedup.json")
    assert proto["n_dropped_images"] == 568
