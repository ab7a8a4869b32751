from __future__ import annotations

import json

import numpy as np

from fer_bench.data import FerData
from fer_bench.data.audit import audit, load_protocol, write_protocol
from fer_bench.data.labels import FER2013_CLASSES, PRIVATE, PUBLIC, TRAIN
from fer_bench.experiment.plan import make_protocol
from fer_bench.recipes import load_recipe


def _data() -> FerData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 48, 48), dtype=np.uint8)
    images[7] = images[0]  # a public test image identical to a training image, same label
    images[8] = images[1]  # a private test image identical to a training image, other label
    images[3] = images[2]  # a duplicate inside train
    images[5] = 0  # blank
    labels = np.array([0, 1, 2, 2, 3, 4, 5, 0, 6, 1, 2, 3])
    splits = np.array([TRAIN] * 7 + [PUBLIC, PRIVATE, PUBLIC, PRIVATE, PRIVATE], dtype=np.int8)
    return FerData("toy", images, labels, splits, classes=FER2013_CLASSES, source="toy")


def test_audit_finds_duplicates_leakage_conflicts_and_blanks():
    result = audit(_data())
    s = result.summary()
    assert s["duplicate_groups"] == 3 and s["redundant_copies"] == 3
    assert sorted(result.leaked_test) == [7, 8] and s["train_test_groups"] == 2
    assert result.conflicting_groups == [[1, 8]]
    assert result.blank == [5]
    assert s["images"] == 12


def test_leakage_free_protocol_drops_the_leaked_test_images(tmp_path):
    data = _data()
    write_protocol(data, audit(data), tmp_path / "dedup.json")
    assert json.loads((tmp_path / "dedup.json").read_text())["n_dropped_images"] == 2
    proto = make_protocol(data, load_recipe(None, ["eval.split=test"]), load_protocol(tmp_path / "dedup.json"))
    assert proto.name == "dedup"
    assert sorted(proto.test.tolist()) == [9, 10, 11]
    assert sorted(make_protocol(data, load_recipe(None, ["eval.split=test"])).test.tolist()) == [7, 8, 9, 10, 11]


def test_content_hashes_are_computed_once_per_array():
    """A suite cell's two splits (and an audit) hash one in-memory dataset once; another array is hashed anew."""
    from fer_bench.data.audit import content_hashes

    images = np.arange(4 * 48 * 48, dtype=np.uint8).reshape(4, 48, 48)
    first = content_hashes(images)
    assert content_hashes(images) is first  # the cached list itself
    copy = images.copy()
    assert content_hashes(copy) == first and content_hashes(copy) is not first
