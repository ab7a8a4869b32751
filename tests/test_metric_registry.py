"""The metric registry: a metric added the documented way (one ``register_metric`` beside its function) reaches the
row, MLflow, every leaderboard format and the page with no other edit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

import fer_bench
from fer_bench.evaluation import predictions
from fer_bench.evaluation.metrics import METRICS, Scores, classification_metrics, register_metric
from fer_bench.report import leaderboard as lb
from fer_bench.report import page

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
TINY = ["train.epochs=1", "data.limit_train=64", "train.batch_size=32"]
NAME, HEADER = "balanced_accuracy", "balanced acc. %"


def _balanced_accuracy(s: Scores) -> float:
    # mean recall over the classes the labels hold (scikit-learn's balanced_accuracy_score)
    support = s.per_class["support"]
    return float(s.per_class["recall"][support > 0].mean() * 100)


@pytest.fixture
def balanced_accuracy():
    """``balanced_accuracy`` registered for the default table and the CSV, taken out again afterwards."""
    register_metric(NAME, header=HEADER, tables=("default", "csv"), description="mean per-class recall")(
        _balanced_accuracy
    )
    try:
        yield METRICS.get(NAME)
    finally:
        METRICS.remove(NAME)


def test_the_headline_metrics_are_registry_entries_in_the_row_order():
    m = classification_metrics(np.eye(7), np.arange(7), CLASSES)
    headline = [k for k in m if not k.startswith(("precision_", "recall_", "f1_"))]
    assert headline == METRICS.names(ordered=True)
    assert headline[:6] == ["top1", "top2", "macro_f1", "weighted_f1", "macro_precision", "macro_recall"]


def test_a_registered_metric_is_computed_and_matches_scikit_learn(balanced_accuracy):
    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(300, 7)), rng.integers(0, 7, 300)
    logits[np.arange(150), y[:150]] += 2  # better than chance, unequally per class
    m = classification_metrics(logits, y, CLASSES)
    assert m[NAME] == pytest.approx(skm.balanced_accuracy_score(y, logits.argmax(1)) * 100)
    assert m["top1"] == pytest.approx(skm.accuracy_score(y, logits.argmax(1)) * 100)  # the others unchanged


def test_a_metric_is_gone_once_removed():
    assert NAME not in METRICS
    assert NAME not in classification_metrics(np.eye(7), np.arange(7), CLASSES)


def test_a_duplicate_name_is_refused(balanced_accuracy):
    with pytest.raises(ValueError, match=NAME):
        register_metric(NAME)(_balanced_accuracy)
    with pytest.raises(ValueError, match="top1"):
        register_metric("top1")(_balanced_accuracy)
    assert METRICS.get(NAME) is balanced_accuracy  # the first entry stays


def test_a_direction_other_than_higher_or_lower_is_refused():
    with pytest.raises(ValueError, match="direction"):
        register_metric("toy_metric", direction="up")(_balanced_accuracy)
    with pytest.raises(ValueError, match="cost"):  # a table the leaderboard would never show it in
        register_metric("toy_metric", tables=("cost",))(_balanced_accuracy)
    assert "toy_metric" not in METRICS


def test_a_registered_metric_reaches_row_mlflow_every_format_and_the_page(balanced_accuracy, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from fer_bench.experiment.tracking import MlflowTracker, search_model_runs

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "out"
    rows = fer_bench.run(["simple_cnn"], sets=[*TINY, "eval.tta=[none,hflip]"], out=out, progress=False,
                         tracker=MlflowTracker(uri, "t"))  # fmt: skip
    row = rows[0]
    assert NAME in row["test_tta"]["hflip"]  # a TTA column's figures come from the registry too

    # the row: in memory, on disk, and equal to scikit-learn's on the row's own predictions
    value = row["test"][NAME]
    assert json.loads((out / row["run_id"] / "result.json").read_text())["test"][NAME] == value
    p = predictions.read(out / row["run_id"] / row["predictions"]["file"])
    assert value == pytest.approx(skm.balanced_accuracy_score(p["labels"], p["probs"].argmax(1)) * 100)

    # MLflow: logged under test_<name>, and read back into the leaderboard frame
    runs = search_model_runs(uri, "t")
    assert runs[f"metrics.test_{NAME}"].iloc[0] == pytest.approx(value)
    assert runs[f"metrics.test_hflip_{NAME}"].iloc[0] == pytest.approx(row["test_tta"]["hflip"][NAME])
    assert lb.frame_from_mlflow(runs)[NAME].iloc[0] == pytest.approx(value)
    parent = [r for r in mlflow.search_runs(experiment_names=["t"], output_format="list")
              if r.data.tags.get("fer_bench.kind") == "suite"][0]  # fmt: skip
    assert parent.data.metrics[f"best_{NAME}/simple_cnn"] == pytest.approx(value)

    # every leaderboard format shows it with its header, its arrow and its registered format
    frame = lb.frame_from_rows(lb.read_rows([out]))
    assert frame[NAME].iloc[0] == pytest.approx(value)
    agg = lb.aggregate(frame)
    cell = f"{value:.2f}"
    for fmt in ("md", "latex", "html"):
        text = lb.render(agg, fmt)
        assert cell in text, fmt
        assert ("balanced acc. \\%" if fmt == "latex" else HEADER) in text, fmt
    assert "$\\uparrow$" in lb.render(agg, "latex").split("balanced acc.")[1].split("&")[0]
    assert f"{HEADER} ↑" in lb.render(agg, "md")
    csv = lb.render(agg, "csv").splitlines()
    assert NAME in csv[0].split(",")
    assert float(csv[1].split(",")[csv[0].split(",").index(NAME)]) == pytest.approx(value, abs=1e-4)

    # the page: a sortable column keyed by the metric's name, sorting by the number itself
    html_path = tmp_path / "page.html"
    page.write(frame, agg, html_path)
    text = html_path.read_text()
    assert f'data-key="{NAME}"' in text and f"{HEADER} ↑" in text
    assert f'data-v="{float(agg[NAME].iloc[0])!r}">{cell}</td>' in text


def test_class_averaged_metrics_average_over_the_classes_named():
    """A cross-dataset evaluation averages over the shared classes only: scikit-learn's ``labels=`` argument."""
    rng = np.random.default_rng(1)
    logits, y = rng.normal(size=(400, 7)), rng.integers(0, 7, 400)
    logits[np.arange(200), y[:200]] += 1.5
    shared = np.array([0, 2, 3, 6])
    m = classification_metrics(logits, y, CLASSES, averaged=shared)
    pred = logits.argmax(1)
    for name, fn in (("macro_f1", skm.f1_score), ("macro_precision", skm.precision_score),
                     ("macro_recall", skm.recall_score)):  # fmt: skip
        assert m[name] == pytest.approx(fn(y, pred, labels=shared, average="macro", zero_division=0) * 100)
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, labels=shared, average="weighted") * 100)
    assert m["top1"] == pytest.approx(skm.accuracy_score(y, pred) * 100)  # over every sample
    assert m["macro_f1"] != pytest.approx(classification_metrics(logits, y, CLASSES)["macro_f1"])
