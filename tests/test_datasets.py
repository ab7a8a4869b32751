"""Datasets as modules (issue 17): the registry and `ls datasets`, FER+ (rules, join, counts on the real file),
RAF-DB and `folder` fixtures end to end, the soft-label loss, and each bad input's exit 2."""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fer_bench.cli import main
from fer_bench.data import DATASETS, load_dataset
from fer_bench.data.augment import Normalize
from fer_bench.data.ferplus import CLASSES as FERPLUS_CLASSES
from fer_bench.data.ferplus import crossentropy, majority
from fer_bench.data.labels import PRIVATE, PUBLIC, TEST, TRAIN
from fer_bench.data.rafdb import CLASSES as RAFDB_CLASSES
from fer_bench.engine import predict, trainer
from fer_bench.engine.predict import device_tensors as _device_tensors
from fer_bench.utils.errors import ConfigError, DataError
from helpers import write_ferplus, write_rafdb

REAL_FERPLUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ferplus"
REAL_FER2013 = REAL_FERPLUS.parent / "fer2013"
USAGE_SPLIT = {"Training": TRAIN, "PublicTest": PUBLIC, "PrivateTest": PRIVATE}


# ---- the registry and `ls datasets` ----


def test_ls_datasets_lists_every_dataset_with_classes_size_channels_and_splits(capsys):
    assert main(["ls", "datasets", "--long"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(lines) == {"fer2013", "ferplus", "rafdb", "folder", "synthetic"}
    cells = {name: re.split(r"\s{2,}", line) for name, line in lines.items()}
    assert cells["fer2013"][1:4] == ["angry disgust fear happy sad surprise neutral", "48×48", "1"]
    assert cells["rafdb"][1:4] == ["surprise fear disgust happy sad angry neutral", "100×100", "3"]
    assert "train=Training: 28709" in lines["fer2013"] and "private=PrivateTest: 3589" in lines["fer2013"]
    assert " ".join(FERPLUS_CLASSES) in lines["ferplus"] and "hard|soft" in lines["ferplus"]
    assert "100×100" in lines["rafdb"] and "train=train_*: 12271, test=test_*: 3068" in lines["rafdb"]
    assert lines["folder"].count("from the data") >= 3
    assert "train=train: 2400" in lines["synthetic"]


def test_every_dataset_states_what_ls_prints():
    for name in DATASETS:
        spec = DATASETS.get(name)
        assert spec.description and spec.citation and spec.splits, name
        assert set(spec.split_sizes) <= set(spec.splits), name
        assert spec.classes is None or len(set(spec.classes)) == len(spec.classes), name


def test_dataset_options_are_checked():
    with pytest.raises(ConfigError, match="not an option of ferplus"):
        load_dataset("ferplus:label=crossentropy", REAL_FERPLUS)
    with pytest.raises(ConfigError, match="--dataset ferplus:labels=probabilty.*crossentropy"):
        load_dataset("ferplus:labels=probabilty", REAL_FERPLUS)
    with pytest.raises(ConfigError, match="unknown dataset 'rafd'"):
        load_dataset("rafd")


# ---- FER+: the rules on single rows (the docstring's worked cases) ----


@pytest.mark.parametrize(
    ("votes", "major", "dist"),
    [
        ([4, 0, 0, 1, 3, 2, 0, 0, 0, 0], None, {0: 4, 4: 3}),  # single vote dropped: 4/9 no majority; 7/9 ≥ 75 %
        ([0, 10, 0, 0, 0, 0, 0, 0, 0, 0], 1, {1: 10}),
        ([3, 0, 0, 0, 0, 0, 0, 0, 7, 0], None, None),  # top vote unknown
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], None, None),  # not a face
        ([3, 0, 0, 0, 0, 0, 0, 3, 3, 1], None, {0: 3, 7: 3}),  # a tie with unknown: the emotions before it
        ([2, 2, 2, 2, 2, 0, 0, 0, 0, 0], None, None),  # five classes tie: more than three taken
        ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], None, None),  # every vote single: nothing left
    ],
)
def test_ferplus_rules_on_single_rows(votes, major, dist):
    assert majority(np.array(votes)) == major
    got = crossentropy(np.array(votes))
    if dist is None:
        assert got is None
    else:
        want = np.zeros(8)
        for k, v in dist.items():
            want[k] = v
        np.testing.assert_allclose(got, want / want.sum(), rtol=1e-6)


# ---- FER+: counts on the real file, from its rows (skipped without ../shared/data) ----


def reference_distribution(raw: list[float], mode: str) -> list[float]:
    """The microsoft/FERPlus reference rule for one row, restated loop by loop (not the loader's formulation)."""
    raw = [0.0 if v <= 1.0 else v for v in raw]
    total, emotion = sum(raw), [0.0] * 10
    unknown = [0.0] * 8 + [1.0, 0.0]
    if mode == "majority":
        top = max(raw)
        if top > 0.5 * total:
            emotion[raw.index(top)] = top
        else:
            emotion = unknown
    else:
        part, count, valid = 0.0, 0, True
        while part < 0.75 * total and count < 3 and valid:
            top = max(raw)
            for i in range(10):
                if raw[i] == top:
                    emotion[i], raw[i] = top, 0.0
                    part, count = part + top, count + 1
                    if i >= 8:
                        valid = False
                        if sum(emotion) > top:
                            emotion[i], count = 0.0, count - 1
                        break
        if sum(emotion) <= 0.5 * total or count > 3:
            emotion = unknown
    return [v / sum(emotion) for v in emotion]


def reference_counts(mode_for: dict[str, str]) -> dict[str, tuple[list[int], np.ndarray]]:
    """Per usage: images per class (argmax) and summed distributions, straight from fer2013new.csv's rows.

    Rows the reference reads: those with an image name. A name used twice is read against the later row's PNG; the
    join file shows whether the earlier row's own face is that PNG's (both faces then map to the later row), and
    when it is not, the earlier row's votes would label another face: such rows are not counted.
    """
    with (REAL_FERPLUS / "msambare_to_ferplus.csv").open() as f:
        claims: dict[str, int] = {}
        for rec in csv.DictReader(f):
            for r in filter(None, rec["fer2013new_row_indices"].split(";")):
                claims[r] = claims.get(r, 0) + 1
    with (REAL_FERPLUS / "fer2013new.csv").open() as f:
        rows = list(csv.reader(f))[1:]
    last = {row[1]: i for i, row in enumerate(rows) if row[1]}
    counts = {u: ([0] * 8, np.zeros(8)) for u in USAGE_SPLIT}
    for i, row in enumerate(rows):
        if not row[1] or (last[row[1]] != i and claims.get(str(last[row[1]]), 0) < 2):
            continue
        dist = reference_distribution([float(v) for v in row[2:]], mode_for[row[0]])
        top = int(np.argmax(dist))
        if top < 8:
            counts[row[0]][0][top] += 1
            counts[row[0]][1][:] += np.array(dist[:8]) / sum(dist[:8])
    return counts


needs_ferplus = pytest.mark.skipif(
    not (REAL_FERPLUS / "fer2013new.csv").is_file() or not (REAL_FER2013 / "train").is_dir(),
    reason=f"real FER+ / FER2013 not present at {REAL_FERPLUS}",
)


@needs_ferplus
@pytest.mark.real_data
@pytest.mark.parametrize("mode", ["majority", "crossentropy"])
def test_ferplus_counts_equal_the_reference_rules_on_the_file(mode):
    data = load_dataset(f"ferplus:labels={mode}", REAL_FERPLUS)
    want = reference_counts({"Training": mode, "PublicTest": "majority", "PrivateTest": "majority"})
    for usage, split in USAGE_SPLIT.items():
        in_split = data.splits == split
        assert np.bincount(data.labels[in_split], minlength=8).tolist() == want[usage][0], usage
    train = data.splits == TRAIN
    if mode == "crossentropy":  # the distributions themselves, summed per class
        np.testing.assert_allclose(data.soft[train].sum(0), want["Training"][1], rtol=1e-5)
        assert np.count_nonzero(data.soft[train].max(1) < 1) > 5_000  # really soft, not one-hot
    else:
        assert data.soft is None
    assert data.images.shape[1:] == (48, 48) and data.classes == FERPLUS_CLASSES
    notes = " | ".join(data.notes)
    assert "175 image(s) match no row" in notes and "173 row(s) without an image name and 2 named row(s)" in notes


# ---- FER+: the row-by-row join from fer2013.csv, and rows that do not line up ----


def test_ferplus_from_fer2013_csv_row_by_row(tmp_path):
    votes = write_ferplus(tmp_path)
    data = load_dataset("ferplus", tmp_path)
    kept = [i for i in range(len(votes)) if i % 5]
    assert len(data) == len(kept) and data.labels.tolist() == [i % 8 for i in kept]
    assert data.classes == FERPLUS_CLASSES and data.name == "ferplus"
    soft = load_dataset("ferplus:labels=crossentropy", tmp_path)
    assert soft.name == "ferplus-crossentropy" and soft.soft.shape == (len(soft), 8)
    row = soft.soft[soft.splits == TRAIN][0]  # row 1: 8 votes for class 1, 2 for class 2
    np.testing.assert_allclose(row, np.eye(8)[1] * 0.8 + np.eye(8)[2] * 0.2, rtol=1e-6)


def test_ferplus_rows_that_do_not_line_up_exit_2(tmp_path, capsys):
    write_ferplus(tmp_path, drop_row=True)
    with pytest.raises(DataError, match="do not line up"):
        load_dataset("ferplus", tmp_path)
    assert main(["data", "check", "--dataset", "ferplus", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fer2013new.csv" in err and "do not line up" in err


def test_ferplus_bad_header_and_missing_faces_are_errors(tmp_path):
    (tmp_path / "fer2013new.csv").write_text("Usage,Image name,neutral\nTraining,a.png,3\n")
    with pytest.raises(DataError, match="line 1: expected the header"):
        load_dataset("ferplus", tmp_path)
    write_ferplus(tmp_path)
    (tmp_path / "fer2013.csv").unlink()
    with pytest.raises(DataError, match=re.escape(tmp_path.name) + r".*fer2013\.csv"):
        load_dataset("ferplus", tmp_path)


# ---- soft labels need a loss that takes a distribution ----


def test_soft_ce_equals_torch_cross_entropy_on_one_hot_and_on_distributions():
    from fer_bench.engine.builders import SoftTargetCrossEntropy

    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 8, generator=g), torch.randint(0, 8, (16,), generator=g)
    w = torch.rand(8, generator=g) + 0.5
    ref = torch.nn.CrossEntropyLoss(weight=w)(logits, y)
    torch.testing.assert_close(SoftTargetCrossEntropy(w)(logits, y), ref)
    torch.testing.assert_close(SoftTargetCrossEntropy(w)(logits, torch.eye(8)[y]), ref)
    q = torch.rand(16, 8, generator=g).softmax(1)
    ref_soft = torch.nn.functional.cross_entropy(logits, q, label_smoothing=0.1)
    torch.testing.assert_close(SoftTargetCrossEntropy(label_smoothing=0.1)(logits, q), ref_soft)


def test_soft_labels_with_a_hard_loss_are_refused(tmp_path):
    from fer_bench.engine.builders import check_targets
    from fer_bench.recipes.schema import LossCfg

    write_ferplus(tmp_path)
    soft = load_dataset("ferplus:labels=crossentropy", tmp_path)
    with pytest.raises(ConfigError, match="loss.name=soft_ce"):
        check_targets(LossCfg(name="ce"), soft)
    assert check_targets(LossCfg(name="soft_ce"), soft) is True
    assert check_targets(LossCfg(name="ce"), load_dataset("ferplus", tmp_path)) is False


def test_run_with_soft_labels_and_a_hard_loss_exits_2_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "fp").mkdir()
    write_ferplus(tmp_path / "fp")
    argv = ["run", "--dataset", "ferplus:labels=crossentropy", "--data-dir", str(tmp_path / "fp"), "--models",
            "simple_cnn", "--epochs", "1", "--out", str(tmp_path / "out"), "--no-track", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if "error" in line]  # after the data's notes and the run's header
    assert len(errors) == 1 and "--set loss.name=soft_ce" in errors[0] and "Traceback" not in err
    assert not list((tmp_path / "out").rglob("*.*"))


def test_label_distributions_enter_the_data_fingerprint(tmp_path):
    from dataclasses import replace

    from fer_bench.experiment.protocol import data_fingerprint

    write_ferplus(tmp_path)
    soft = load_dataset("ferplus:labels=crossentropy", tmp_path)
    other = soft.soft.copy()
    other[0] = np.roll(other[0], 1)
    assert data_fingerprint(soft) != data_fingerprint(replace(soft, soft=other, images=soft.images.copy()))


def test_an_epoch_trains_on_distributions_through_the_runner_s_tensors(tmp_path):
    """The runner feeds soft_ce the vote distributions (not the majority labels); accuracy uses their argmax."""
    from fer_bench.data.augment import BatchAugment
    from fer_bench.engine import steps as engine
    from fer_bench.engine.builders import SoftTargetCrossEntropy
    from fer_bench.models import create_model
    from fer_bench.recipes.schema import AugmentCfg

    write_ferplus(tmp_path)
    soft = load_dataset("ferplus:labels=crossentropy", tmp_path)
    idx = np.flatnonzero(soft.splits == TRAIN)
    images, targets = _device_tensors(soft, idx, torch.device("cpu"), True)
    assert targets.dtype == torch.float32 and targets.shape == (len(idx), 8)
    torch.testing.assert_close(targets, torch.from_numpy(soft.soft[idx]))
    assert _device_tensors(soft, idx, torch.device("cpu"))[1].tolist() == soft.labels[idx].tolist()
    model, spec = create_model("simple_cnn", num_classes=8)
    norm = Normalize(40, spec.in_chans, spec.mean, spec.std, crop=32)
    augment = BatchAugment(replace(AugmentCfg(), train_crops="tencrop"), norm)  # distributions repeat per crop
    stats = engine.train_one_epoch(
        model, engine.Batches(images, targets, batch_size=8).epoch(), criterion=SoftTargetCrossEntropy(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01), transform=augment, gen=torch.Generator().manual_seed(0),
        ctx=engine.StepContext(torch.device("cpu")),
    )  # fmt: skip
    assert np.isfinite(stats["train_loss"]) and 0 <= stats["train_top1"] <= 100


# ---- RAF-DB: the release layout, RGB 100 px end to end ----


def test_rafdb_store_keeps_100px_rgb_and_its_own_label_order(tmp_path):
    lines = write_rafdb(tmp_path)
    data = load_dataset("rafdb", tmp_path)
    assert data.images.shape == (len(lines), 100, 100, 3) and data.channels == 3
    assert data.classes == RAFDB_CLASSES and data.classes[0] == "surprise"
    assert data.labels.tolist() == [k - 1 for _, k in lines]
    assert np.bincount(data.splits).tolist() == [28, 0, 0, 14] and set(data.splits.tolist()) == {TRAIN, TEST}
    red_minus_blue = data.images[..., 0].astype(int) - data.images[..., 2].astype(int)
    assert red_minus_blue.mean() < -40  # the colour survived decoding: not stored grey


def test_rafdb_trains_and_evaluates_end_to_end_without_going_grey_48(tmp_path, monkeypatch):
    """`fer-bench run --dataset rafdb`: the store stays 100-px RGB and a 3-channel model gets colour at --img-size
    (simple_cnn's one-channel path, RGB to luma, is checked on its own below: one model keeps this test short)."""
    import fer_bench.experiment.runner as runner

    write_rafdb(tmp_path / "raf")
    seen: list[tuple] = []
    original, stores = runner.create_model, []

    def recording(name, **kw):  # what reaches the model's forward: shape, and whether its channels differ
        model, spec = original(name, **kw)
        model.register_forward_pre_hook(
            lambda m, a: seen.append((*a[0].shape[1:], bool((a[0][:, 0] != a[0][:, 2]).any())))
        )
        return model, spec

    monkeypatch.setattr(runner, "create_model", recording)
    stored = lambda data, *a, **k: stores.append(data.images.shape) or _device_tensors(data, *a, **k)  # noqa: E731
    for module in (trainer, predict):  # the training batches and the test pass put the images on the device
        monkeypatch.setattr(module, "device_tensors", stored)
    out = tmp_path / "out"
    argv = ["run", "--dataset", "rafdb", "--data-dir", str(tmp_path / "raf"), "--models", "resnet18", "--epochs", "1",
            "--img-size", "64", "--batch-size", "16", "--out", str(out), "--no-track", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert set(stores) == {(42, 100, 100, 3)}
    assert (3, 64, 64, True) in seen and all(s[:3] == (3, 64, 64) for s in seen if s[1:3] == (64, 64))
    row = json.loads(next(out.rglob("result.json")).read_text())
    assert row["dataset"] == "rafdb" and row["classes"] == list(RAFDB_CLASSES) and row["n_test"] == 14
    assert row["img_size"] == 64 and len(row["confusion_matrix"]) == 7


def test_rgb_batches_reach_a_three_channel_model_in_colour_and_a_grey_one_as_luma():
    x = torch.zeros(2, 8, 8, 3, dtype=torch.uint8)
    x[..., 0], x[..., 2] = 255, 51  # red with a little blue
    rgb = Normalize(4, 3, (0.0,), (1.0,))(x)
    assert rgb.shape == (2, 3, 4, 4)
    (
        torch.testing.assert_close(rgb[:, 0], torch.ones(2, 4, 4)),
        torch.testing.assert_close(rgb[:, 1], torch.zeros(2, 4, 4)),
    )
    grey = Normalize(8, 1, (0.0,), (1.0,))(x)
    want = np.asarray(Image.fromarray(x[0].numpy()).convert("L"), dtype=np.float32) / 255
    assert grey.shape == (2, 1, 8, 8) and np.abs(grey[0, 0].numpy() - want).max() < 1 / 255 + 1e-6


def test_rafdb_list_naming_a_missing_image_exits_2(tmp_path, capsys):
    lines = write_rafdb(tmp_path)
    (tmp_path / "Image" / "aligned" / lines[3][0].replace(".jpg", "_aligned.jpg")).unlink()
    assert main(["data", "check", "--dataset", "rafdb", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "list_patition_label.txt, line 4" in err and "does not exist" in err


# ---- folder: root/<split>/<class>/… ----


def write_folder(root: Path, classes=("happy", "sad", "calm"), size: int = 32) -> None:
    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("test", 2)):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i}.png"
                )


def test_folder_classes_from_the_folders_or_an_option(tmp_path):
    write_folder(tmp_path)
    data = load_dataset("folder", tmp_path)
    assert data.classes == ("calm", "happy", "sad") and data.images.shape == (15, 32, 32, 3)
    assert np.bincount(data.splits, minlength=4).tolist() == [9, 0, 6, 0]
    ordered = load_dataset("folder:classes=sad+happy+calm+angry,size=24,channels=1", tmp_path)
    assert ordered.classes == ("sad", "happy", "calm", "angry") and ordered.images.shape == (15, 24, 24)
    assert ordered.name == "folder-sad-happy-calm-angry-24-1"
    assert [ordered.classes[k] for k in ordered.labels] == [p.split("/")[1] for p in ordered.paths]


def test_folder_with_an_unknown_class_exits_2(tmp_path, capsys):
    write_folder(tmp_path)
    write_folder(tmp_path / "x", classes=("fear",))
    (tmp_path / "x" / "test" / "fear").rename(tmp_path / "test" / "fear")
    assert main(["data", "check", "--dataset", "folder", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown class 'fear'" in err and "folder:classes=" in err
    assert main(["data", "check", "--dataset", "folder:classes=happy+sad", "--data-dir", str(tmp_path)]) == 2
    assert "unknown class 'calm'" in capsys.readouterr().err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
