"""Every committed row that keeps per-sample predictions gives back its headline figures from them, exactly: the
files under results/ are what later work (comparisons, calibration, ensembles) recomputes from without the model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fer_bench.evaluation import predictions

RESULTS = Path(__file__).resolve().parents[1] / "results"
ROWS = sorted(p for p in RESULTS.rglob("result.json") if (p.parent / predictions.FILE).is_file())


def test_the_converged_rows_are_among_them():
    names = {p.parent.relative_to(RESULTS).as_posix() for p in ROWS}
    assert {"fer2013-converged/runs/resnet18-fast-48-fer2013-public-s0",
            "fer2013-converged/runs/resnet18-fast-48-fer2013-private-s0"} <= names  # fmt: skip


@pytest.mark.parametrize("path", ROWS, ids=lambda p: p.parent.relative_to(RESULTS).as_posix())
def test_a_committed_rows_predictions_give_back_its_figures(path):
    row = json.loads(path.read_text())
    file = path.parent / row["predictions"]["file"]
    assert hashlib.sha256(file.read_bytes()).hexdigest() == row["predictions"]["sha256"]
    got = predictions.score(file, tuple(row["classes"]))
    assert got["top1"] == row["test"]["top1"]
    if "cross_dataset" in row:  # macro-F1 of a cross-dataset row is over the shared classes only
        shared = row["cross_dataset"]["shared"]
        assert [got[f"f1_{c}"] for c in shared] == [row["test"][f"f1_{c}"] for c in shared]
        assert sum(row["test"][f"f1_{c}"] for c in shared) / len(shared) == pytest.approx(row["test"]["macro_f1"])
    else:
        assert got["macro_f1"] == row["test"]["macro_f1"]
