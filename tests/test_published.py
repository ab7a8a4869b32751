"""The published reference rows (configs/published.yaml): strict loading and what each row must state."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from fer_bench.report import leaderboard as lb
from fer_bench.report.published import PUBLISHED, QUALIFIERS, ReferenceRow, load_published, published_frame
from fer_bench.utils.errors import ConfigError

STATED = ("source", "split", "tta", "pretrained", "input_size", "epochs")  # the list: present on every row


def _rows(**where) -> list[ReferenceRow]:
    return [r for r in load_published() if all(getattr(r, k) == v for k, v in where.items())]


def test_every_row_states_source_split_tta_pretraining_size_and_epochs():
    raw = yaml.safe_load(PUBLISHED.read_text())
    for item in raw:  # in the file itself, not filled in by a default
        assert set(STATED) <= set(item), item
    rows = load_published()
    assert len(rows) == len(raw) >= 5
    for r in rows:
        assert r.source.strip() and r.split and r.tta and r.pretrained, r


def test_every_row_names_a_registered_backbone():
    from fer_bench.models import get_spec

    for r in load_published():
        get_spec(r.model)  # raises for an unknown name


def test_rmn_rows_are_private_imagenet_224_with_tta():
    rows = _rows(recipe="rmn-comparison")
    assert {(r.model, r.top1) for r in rows} >= {("resnet34", 72.42), ("resnet50", 72.86)}
    for r in rows:
        assert (r.split, r.pretrained, r.input_size, r.tta) == ("private", "imagenet", 224, "used"), r
        assert "phamquiluan/ResidualMaskingNetwork" in r.source and "README.md" in r.source


def test_khaireddin_row_is_public_tencrop_after_train_plus_val_fine_tuning():
    (r,) = _rows(model="vgg_khaireddin")
    assert (r.split, r.tta, r.pretrained, r.input_size) == ("public", "tencrop", "none", 48)
    assert r.epochs == (300, 50) and r.trained_on == "train+val" and "fine-tuning" in r.note
    assert r.top1 == 73.28 and "2105.03588" in r.source
    assert r.params_m == pytest.approx(29.89)  # the 7-class network


def test_naik_row_does_not_claim_fer_bench_test_nor_a_1000_class_count():
    (r,) = _rows(recipe="naik-effnetb2")
    assert r.split == "unstated" and "official test set" in r.note
    assert r.params_m is None  # the paper's 9.2 M counts a 1000-class head
    (insideout,) = _rows(recipe="insideout-effnetv2s")
    assert (insideout.split, insideout.pretrained, insideout.input_size) == ("unstated", "imagenet", None)
    assert (insideout.top1, insideout.macro_f1) == (62.8, 59.0)


def test_frame_and_leaderboard_rows_carry_the_qualifiers():
    df = published_frame()
    per_class = [c for c in df.columns if c.startswith("f1_")]
    assert len(per_class) == 7
    assert {"model", "recipe", "split", "top1", "macro_f1", "params_m", *QUALIFIERS} <= set(df.columns)
    khaireddin = df[df["model"] == "vgg_khaireddin"].iloc[0]
    assert khaireddin["epochs"] == "300+50" and khaireddin["input_size"] == 48
    rows = lb.published_rows()
    assert (rows["device"] == "published").all() and rows["recipe"].str.endswith(" (published)").all()
    assert set(QUALIFIERS) <= set(rows.columns)


GOOD = {f.name: None for f in dataclasses.fields(ReferenceRow) if f.default is dataclasses.MISSING} | {
    "model": "resnet18", "recipe": "x", "source": "arXiv 0000.00000", "split": "public", "top1": 70.0,
    "tta": "none", "pretrained": "none", "trained_on": "train",
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"splitt": "public"}, "unknown key '[0].splitt'"),
        ({"source": None}, "[0].source"),  # null: the wrong type
        ({"source": "  "}, "[0].source"),
        ({"split": "pub"}, "[0].split = 'pub' is not allowed; expected one of public, private, test, unstated"),
        ({"tta": "yes"}, "[0].tta"),
        ({"top1": 120.0}, "[0].top1"),
        ({"epochs": [300, "x"]}, "[0].epochs"),
        (
            {
                "macro_f1": 60.0,
                **{f"f1_{c}": 70.0 for c in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")},
            },
            "[0].macro_f1",
        ),  # fmt: skip
    ],
)
def test_a_bad_row_is_rejected_naming_file_and_key(tmp_path, change, expected):
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump([GOOD | change]))
    with pytest.raises(ConfigError) as err:
        load_published(path)
    assert str(path) in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize("missing", ["source", "split", "tta", "pretrained", "input_size", "epochs"])
def test_a_row_without_a_stated_qualifier_is_rejected(tmp_path, missing):
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump([{k: v for k, v in GOOD.items() if k != missing}]))
    with pytest.raises(ConfigError, match=f"{path}: \\[0\\] lacks {missing}"):
        load_published(path)


def test_the_good_row_of_these_tests_loads(tmp_path):
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump([GOOD]))
    assert load_published(path)[0].model == "resnet18"  # so each rejection above is the change's doing
