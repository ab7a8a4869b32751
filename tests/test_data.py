from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from fer_bench.data import load_dataset, stratified_split, stratified_subset
from fer_bench.data.labels import FER2013_CLASSES, PRIVATE, PUBLIC, TEST, TRAIN
from fer_bench.data.synthetic import make_synthetic
from fer_bench.utils.errors import DataError
from helpers import write_csv, write_tree


@pytest.mark.parametrize("icml", [False, True])
def test_csv_reads_pixels_labels_and_usage(tmp_path, icml):
    path = tmp_path / ("icml_face_data.csv" if icml else "fer2013.csv")
    images, labels, usages = write_csv(path, icml=icml)
    data = load_dataset("fer2013", path)
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)
    expected = np.array([{"Training": TRAIN, "PublicTest": PUBLIC, "PrivateTest": PRIVATE}[u] for u in usages])
    np.testing.assert_array_equal(data.splits, expected)
    assert data.classes == FER2013_CLASSES


def test_csv_found_inside_a_folder(tmp_path):
    write_csv(tmp_path / "fer2013.csv")
    assert len(load_dataset("fer2013", tmp_path)) == 42


def test_folder_tree_maps_labels_by_name_not_folder_order(tmp_path):
    write_tree(tmp_path, spellings={"disgust": "disgusted", "fear": "fearful", "surprise": "surprised"})
    (tmp_path / "train" / "happy" / ".DS_Store").write_text("x")
    data = load_dataset("fer2013", tmp_path)
    for path, label in zip(data.paths, data.labels, strict=True):
        folder = path.split("/")[1]
        assert FER2013_CLASSES[label] == {"disgusted": "disgust", "fearful": "fear", "surprised": "surprise"}.get(
            folder, folder
        )
    # neutral is label 6 in FER2013 order even though its folder sorts 5th alphabetically
    assert set(data.labels[[p.split("/")[1] == "neutral" for p in data.paths]]) == {6}
    assert np.bincount(data.splits, minlength=4).tolist() == [14, 14, 14, 0]
    assert any("skipped 1 non-image" in n for n in data.notes)


def test_test_folder_without_prefixes_is_plain_test(tmp_path):
    write_tree(tmp_path, prefixes=False)
    data = load_dataset("fer2013", tmp_path)
    assert set(data.splits[data.splits != TRAIN]) == {TEST}
    assert len(data.split_indices("test")) == 28
    with pytest.raises(DataError, match="--split test"):
        data.split_indices("public")


def test_odd_images_are_converted_with_a_note(tmp_path):
    write_tree(tmp_path, n_per=1)
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "train" / "happy" / "Training_rgb.png")
    Image.fromarray(np.full((48, 48), 60000, dtype=np.uint16)).save(tmp_path / "train" / "sad" / "Training_16.png")
    data = load_dataset("fer2013", tmp_path)
    assert data.images.shape[1:] == (48, 48)
    notes = " ".join(data.notes)
    assert "RGB→grey" in notes and "64×64→48×48" in notes and "16-bit→8-bit" in notes
    idx = data.paths.index("train/sad/Training_16.png")
    assert data.images[idx].mean() == pytest.approx(60000 / 65535 * 255, abs=1)


def test_cache_is_used_and_invalidated_by_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "fer2013.csv"
    write_csv(path)
    first = load_dataset("fer2013", path)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    again = load_dataset("fer2013", path)
    np.testing.assert_array_equal(first.images, again.images)
    write_csv(path, seed=1)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = load_dataset("fer2013", path)
    assert not np.array_equal(first.images, changed.images)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_missing_data_dir_says_where_it_looked_and_how_to_get_fer2013(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset("fer2013", tmp_path / "nope")
    msg = str(exc.value)
    assert "nope" in msg and "msambare/fer2013" in msg and "--dataset synthetic" in msg
    with pytest.raises(DataError, match="needs --data-dir"):
        load_dataset("fer2013", None)


def test_stratified_split_keeps_class_proportions_and_is_deterministic():
    labels = np.repeat(np.arange(7), [400, 40, 400, 700, 480, 310, 500])
    idx = np.arange(len(labels))
    kept, held = stratified_split(labels, idx, 0.125, seed=3)
    assert len(np.intersect1d(kept, held)) == 0 and len(kept) + len(held) == len(labels)
    np.testing.assert_allclose(np.bincount(labels[held]) / np.bincount(labels), 0.125, atol=0.02)
    np.testing.assert_array_equal(held, stratified_split(labels, idx, 0.125, seed=3)[1])
    sub = stratified_subset(labels, idx, 283, seed=0)
    assert len(sub) == 283 and set(sub) <= set(idx)


def test_synthetic_is_deterministic_and_covers_every_class():
    a, la, sa = make_synthetic(n_train=140, n_public=70, n_private=70, seed=5)
    b, lb, sb = make_synthetic(n_train=140, n_public=70, n_private=70, seed=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert set(la) == set(range(7)) and set(sa) == {TRAIN, PUBLIC, PRIVATE}
    c, _, _ = make_synthetic(n_train=140, n_public=70, n_private=70, seed=6)
    assert not np.array_equal(a, c)
