"""Cross-dataset rows on the same faces under both label sets (fer_bench.evaluation.cross_dataset): faces matched by a
label-free content id, top-1 under each dataset's labels, and an exact McNemar test checked against SciPy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from fer_bench.evaluation import cross_dataset, predictions

ROOT = Path(__file__).resolve().parents[1]


def test_faces_match_across_label_sets_by_content_not_label():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    faces[4] = faces[1]  # an identical face twice: numbered in order
    source_ids = np.array([f"s{i}" for i in range(6)])
    keep = [0, 1, 3, 4]  # the target keeps four of them (other labels, other ids)
    pairs = cross_dataset.same_face_pairs(faces, source_ids, faces[keep], np.array([f"t{i}" for i in keep]))
    assert pairs.tolist() == [["s0", "t0"], ["s1", "t1"], ["s3", "t3"], ["s4", "t4"]]


def test_same_faces_scores_one_model_on_the_identical_faces_under_both_label_sets():
    m = cross_dataset.class_map(("angry", "happy"), ("happy", "angry", "contempt"))
    own = {"probs": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32), "labels": np.array([0, 1, 1]),
           "ids": np.array(["a", "b", "c"])}  # fmt: skip
    p_ext, y = cross_dataset.extend(own["probs"][[2, 0]], np.array([1, 2]), m)  # faces c (angry), a (contempt)
    cross = {"probs": p_ext, "labels": y, "ids": np.array(["C", "A"])}
    right = cross_dataset.correct_on_pairs(own, ("angry", "happy"), cross, m, np.array([["a", "A"], ["c", "C"]]))
    assert [r.tolist() for r in right] == [[True, False], [False, True]]
    assert cross_dataset.same_faces(*right) == {"n_faces": 2, "top1_own_labels": 50.0, "top1_other_labels": 50.0}


def test_the_paired_test_is_scipys_exact_mcnemar():
    rng = np.random.default_rng(1)
    a, b = rng.random(500) < 0.66, rng.random(500) < 0.62
    got = cross_dataset.mcnemar_exact(a, b)
    n10, n01 = int((a & ~b).sum()), int((~a & b).sum())
    assert (got["a_only"], got["b_only"]) == (n10, n01)
    assert got["p"] == pytest.approx(binomtest(n10, n10 + n01, 0.5).pvalue)
    assert got["diff_pt"] == pytest.approx((a.mean() - b.mean()) * 100)


SAME_FACES = ROOT / "results/fer2013-converged/cross-dataset/same-faces.json"


def test_every_committed_cross_row_carries_same_faces_figures_that_recompute():
    rows = sorted((ROOT / "results").rglob("cross-dataset/*/result.json"))
    assert len(rows) == 5
    pairs = {
        c: np.loadtxt(ROOT / "results/ferplus-converged/same-faces-pairs.csv", delimiter=",", dtype=str, skiprows=1)[
            :, i
        ]
        for i, c in enumerate(("fer2013", "ferplus", "ferplus-crossentropy"))
    }
    for path in rows:
        row = json.loads(path.read_text())
        sf = row["same_faces"]
        own_row = json.loads((ROOT / sf["own_row"] / "result.json").read_text())
        own = predictions.read(ROOT / sf["own_row"] / own_row["predictions"]["file"])
        cross = predictions.read(path.parent / row["predictions"]["file"])
        block = row["cross_dataset"]
        m = cross_dataset.ClassMap(tuple(block["model_classes"]), tuple(block["data_classes"]))
        key = own_row["dataset"].replace(":labels=", "-")
        both = np.stack([pairs[key], pairs[row["dataset"]]], 1)
        right_own, right_cross = cross_dataset.correct_on_pairs(own, tuple(own_row["classes"]), cross, m, both)
        assert sf["n_faces"] == len(both) == 3152
        assert sf["top1_own_labels"] == pytest.approx(right_own.mean() * 100)
        assert sf["top1_other_labels"] == pytest.approx(right_cross.mean() * 100)


def test_the_committed_same_faces_table_holds_the_v4_v1_paired_test():
    got = json.loads(SAME_FACES.read_text())["paired"]["fast-48 v4 − fast-48 v1"]
    for labels in ("own_labels", "other_labels"):
        d = got[labels]
        assert d["n"] == 3152
        assert d["p"] == pytest.approx(binomtest(d["a_only"], d["a_only"] + d["b_only"], 0.5).pvalue)


def test_the_committed_table_holm_adjusts_its_family_and_splits_v4_v1_by_copies_outside_private():
    from statsmodels.stats.multitest import multipletests

    got = json.loads(SAME_FACES.read_text())
    family = [d for p in got["paired"].values() for d in (p["own_labels"], p["other_labels"])]
    assert len(family) == 8
    holm = multipletests([d["p"] for d in family], method="holm")[1]
    assert [d["p_holm"] for d in family] == pytest.approx(list(holm))
    pairs = np.loadtxt(ROOT / "results/ferplus-converged/same-faces-pairs.csv", delimiter=",", dtype=str, skiprows=1)
    elsewhere = pairs[:, 3] == "1"
    assert elsewhere.sum() == 284
    split = got["paired_by_copy_outside_private"]
    assert [v["n_faces"] for v in split.values()] == [284, 2868]
    rows = {}
    for name in ("fast-48 v4", "fast-48 v1"):
        line = got["lines"][name]
        own_row = json.loads((ROOT / line["own"] / "result.json").read_text())
        cross_row = json.loads((ROOT / line["cross"] / "result.json").read_text())
        own = predictions.read(ROOT / line["own"] / own_row["predictions"]["file"])
        cross = predictions.read(ROOT / line["cross"] / cross_row["predictions"]["file"])
        block = cross_row["cross_dataset"]
        m = cross_dataset.ClassMap(tuple(block["model_classes"]), tuple(block["data_classes"]))
        rows[name] = cross_dataset.correct_on_pairs(own, tuple(own_row["classes"]), cross, m, pairs[:, :2])
    for (where, d), mask in zip(split.items(), (elsewhere, ~elsewhere), strict=True):
        for k, labels in enumerate(("own_labels", "other_labels")):
            a, b = rows["fast-48 v4"][k][mask], rows["fast-48 v1"][k][mask]
            n10, n01 = int((a & ~b).sum()), int((~a & b).sum())
            assert (d[labels]["a_only"], d[labels]["b_only"]) == (n10, n01), where
            assert d[labels]["p"] == pytest.approx(binomtest(n10, n10 + n01, 0.5).pvalue)
    sub = [d for p in split.values() for d in (p["own_labels"], p["other_labels"])]
    assert [d["p_holm"] for d in sub] == pytest.approx(list(multipletests([d["p"] for d in sub], method="holm")[1]))
    assert split["fast-48 v4 − fast-48 v1, copy outside PrivateTest"]["own_labels"]["diff_pt"] == pytest.approx(
        6.34, abs=0.01
    )
