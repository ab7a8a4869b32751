from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from fer_bench.evaluation.metrics import classification_metrics, confusion_matrix

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 500))
    y = rng.integers(0, 7, n)
    logits = rng.normal(size=(n, 7))
    logits[np.arange(n), y] += rng.uniform(0, 2)  # partly right, so every metric is non-trivial
    if seed == 0:
        y[y == 1] = 0  # a class absent from the labels: scikit-learn's zero_division=0 convention
    pred = logits.argmax(1)
    m = classification_metrics(logits, y, CLASSES)
    labels = list(range(7))
    assert m["top1"] == pytest.approx(skm.accuracy_score(y, pred) * 100)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0) * 100)
    assert m["weighted_f1"] == pytest.approx(
        skm.f1_score(y, pred, labels=labels, average="weighted", zero_division=0) * 100
    )
    assert m["top2"] == pytest.approx(skm.top_k_accuracy_score(y, logits, k=2, labels=labels) * 100)
    p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    for i, c in enumerate(CLASSES):
        assert m[f"precision_{c}"] == pytest.approx(p[i] * 100)
        assert m[f"recall_{c}"] == pytest.approx(r[i] * 100)
        assert m[f"f1_{c}"] == pytest.approx(f[i] * 100)
    assert m["macro_precision"] == pytest.approx(p.mean() * 100)
    assert m["macro_recall"] == pytest.approx(r.mean() * 100)
    np.testing.assert_array_equal(confusion_matrix(y, pred, 7), skm.confusion_matrix(y, pred, labels=labels))
