"""Classification metrics as pure numpy functions, on a 0–100 scale (cross-checked against scikit-learn in tests).

The headline metrics of a result row are one registry, :data:`METRICS`: each entry carries its function, its
direction, its number format, its header and the leaderboard tables that show it. The row (``test``), MLflow
(``test_<name>``), every leaderboard format and the page read the registry, so a metric is one
:func:`register_metric` call beside its function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fer_bench.utils.registry import Registry

# Direction of every other number a result row can hold (the headline metrics carry theirs): True = higher is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "loss": False, "params": False, "gmacs": False, "infer_img_s": True, "train_img_s": True,
    "infer_model_img_s": True, "train_e2e_img_s": True, "train_wall_s": False, "train_min": False,
    "val_near_best_epoch": False, "val_near_best_min": False, "ece": False, "nll": False, "brier": False,
    "mca": True, "mca_ratio": True, "mca_above_majority": True, "top1_shared": True,
}  # fmt: skip


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with true classes as rows and predictions as columns."""
    flat = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # scikit-learn's zero_division=0: an undefined ratio counts as 0.
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    precision = _safe_div(tp, cm.sum(0).astype(np.float64))
    recall = _safe_div(tp, cm.sum(1).astype(np.float64))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(1)}


def topk_accuracy(logits: np.ndarray, y_true: np.ndarray, k: int) -> float:
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(y_true)[:, None]).any(1).mean() * 100)


@dataclass(frozen=True)
class Scores:
    """What a metric function reads of one evaluation: logits, true labels, the confusion matrix, per-class
    statistics (:func:`per_class`) and the classes that class-averaged metrics average over (all of them, except in a
    cross-dataset evaluation, where only the classes both label sets share enter a macro figure)."""

    logits: np.ndarray
    y_true: np.ndarray
    cm: np.ndarray
    per_class: dict[str, np.ndarray]
    averaged: np.ndarray  # class indices

    def over_classes(self, stat: str) -> np.ndarray:
        """``per_class[stat]`` of the classes a class-averaged metric reads."""
        return self.per_class[stat][self.averaged]


TABLES = ("default", "comparison", "csv")  # the places of the leaderboard that show registered metrics


@dataclass(frozen=True)
class Metric:
    """One headline metric of a result row.

    Attributes:
        name: the row key (``test[name]``; MLflow ``test_<name>``), snake_case.
        fn: the metric of one evaluation on a 0–100 scale.
        direction: "higher" or "lower" is better (the ↑/↓ of every table).
        fmt: the number format of a table cell, e.g. ``".2f"``.
        header: the column header, without its arrow.
        tables: where the leaderboard shows it, of :data:`TABLES`: "default" (the default table), "comparison" (the
            comparison column group) and "csv"; empty: the row and MLflow only.
        description: one line for listings and docs.
    """

    name: str
    fn: Callable[[Scores], float]
    direction: Literal["higher", "lower"]
    fmt: str
    header: str
    tables: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"metric {self.name!r}: direction must be 'higher' or 'lower', not {self.direction!r}")
        if unknown := [t for t in self.tables if t not in TABLES]:
            raise ValueError(f"metric {self.name!r}: tables {unknown} are none of {list(TABLES)}")


METRICS = Registry[Metric]("metric", list_hint="fer_bench.evaluation.metrics.METRICS.names(ordered=True)")


def register_metric(
    name: str,
    *,
    direction: Literal["higher", "lower"] = "higher",
    fmt: str = ".2f",
    header: str = "",
    tables: tuple[str, ...] = (),
    description: str = "",
) -> Callable[[Callable[[Scores], float]], Callable[[Scores], float]]:
    """Register a headline metric; a name registered twice is an error.

    Example:
        >>> @register_metric("error_rate", direction="lower", header="error %")  # doctest: +SKIP
        ... def error_rate(s: Scores) -> float:
        ...     return 100 - float(np.trace(s.cm) / max(s.cm.sum(), 1) * 100)
    """

    def add(fn: Callable[[Scores], float]) -> Callable[[Scores], float]:
        METRICS.add(name, Metric(name, fn, direction, fmt, header or name, tuple(tables), description))
        return fn

    return add


def headline() -> list[Metric]:
    """Every registered headline metric, in registration order."""
    return [METRICS.get(n) for n in METRICS.names(ordered=True)]


def shown_in(table: str) -> list[str]:
    """The names of the headline metrics that ``table`` (a column group, "default" or "csv") shows."""
    return [m.name for m in headline() if table in m.tables]


def higher_is_better(key: str) -> bool | None:
    """The direction of a row key: a headline metric's from the registry, the rest from :data:`HIGHER_IS_BETTER`;
    None when unknown."""
    if key in METRICS:
        return METRICS.get(key).direction == "higher"
    return HIGHER_IS_BETTER.get(key)


@register_metric("top1", header="top-1 %", tables=("default", "csv"), description="top-1 accuracy")
def _top1(s: Scores) -> float:
    return float(np.trace(s.cm) / max(s.cm.sum(), 1) * 100)


@register_metric("top2", description="top-2 accuracy")
def _top2(s: Scores) -> float:
    return topk_accuracy(s.logits, s.y_true, 2) if s.logits.shape[1] > 1 else 100.0


@register_metric("macro_f1", header="macro-F1", tables=("default", "csv"), description="mean per-class F1")
def _macro_f1(s: Scores) -> float:
    return float(s.over_classes("f1").mean() * 100)


@register_metric("weighted_f1", header="weighted-F1", tables=("comparison", "csv"),
                 description="per-class F1 weighted by support")  # fmt: skip
def _weighted_f1(s: Scores) -> float:
    support = s.over_classes("support").astype(np.float64)
    return float(_safe_div(np.array([(s.over_classes("f1") * support).sum()]), np.array([support.sum()]))[0] * 100)


@register_metric("macro_precision", description="unweighted mean of per-class precision")
def _macro_precision(s: Scores) -> float:
    return float(s.over_classes("precision").mean() * 100)


@register_metric("macro_recall", description="unweighted mean of per-class recall")
def _macro_recall(s: Scores) -> float:
    return float(s.over_classes("recall").mean() * 100)


def classification_metrics(
    logits: np.ndarray, y_true: np.ndarray, classes: tuple[str, ...], averaged: np.ndarray | None = None
) -> dict[str, float]:
    """Every headline metric (:data:`METRICS`, in registration order) and per-class metric of one evaluation, as a
    flat ``dict[str, float]``; ``averaged`` (class indices, default all) are the classes a class-averaged metric
    averages over.

    Example:
        >>> m = classification_metrics(np.eye(3), np.array([0, 1, 2]), ("a", "b", "c"))
        >>> m["top1"], m["macro_f1"], m["f1_b"]
        (100.0, 100.0, 100.0)
    """
    y_pred = np.argmax(logits, axis=1)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    pc = per_class(cm)
    scores = Scores(logits, np.asarray(y_true), cm, pc, np.arange(len(classes)) if averaged is None else averaged)
    out = {m.name: float(m.fn(scores)) for m in headline()}
    for stat in ("precision", "recall", "f1"):
        out |= {f"{stat}_{c}": float(v * 100) for c, v in zip(classes, pc[stat], strict=True)}
    return out
