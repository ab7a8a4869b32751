"""Classification metrics as pure numpy functions, on a 0–100 scale (cross-checked against scikit-learn in tests)."""

from __future__ import annotations

import numpy as np

# Direction of every metric key a result row can hold: True = higher is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "top1": True, "top2": True, "macro_f1": True, "weighted_f1": True, "macro_precision": True,
    "macro_recall": True, "loss": False, "params": False, "gmacs": False, "infer_img_s": True, "train_img_s": True,
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


def classification_metrics(logits: np.ndarray, y_true: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    """Every headline and per-class metric of one evaluation, as a flat ``dict[str, float]``.

    Example:
        >>> m = classification_metrics(np.eye(3), np.array([0, 1, 2]), ("a", "b", "c"))
        >>> m["top1"], m["macro_f1"], m["f1_b"]
        (100.0, 100.0, 100.0)
    """
    y_pred = np.argmax(logits, axis=1)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    pc = per_class(cm)
    support = pc["support"].astype(np.float64)
    out = {
        "top1": float(np.trace(cm) / max(cm.sum(), 1) * 100),
        "top2": topk_accuracy(logits, y_true, 2) if logits.shape[1] > 1 else 100.0,
        "macro_f1": float(pc["f1"].mean() * 100),
        "weighted_f1": float(_safe_div(np.array([(pc["f1"] * support).sum()]), np.array([support.sum()]))[0] * 100),
        "macro_precision": float(pc["precision"].mean() * 100),
        "macro_recall": float(pc["recall"].mean() * 100),
    }
    for stat in ("precision", "recall", "f1"):
        out |= {f"{stat}_{c}": float(v * 100) for c, v in zip(classes, pc[stat], strict=True)}
    return out
