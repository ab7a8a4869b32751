"""Calibration of class probabilities: ECE, NLL, Brier, temperature scaling and reliability diagrams (no torch).

The inputs are a predictions file's float32 probabilities (:mod:`fer_bench.evaluation.predictions`). Temperature scaling
works on their logarithms: ``softmax(log p / T) = softmax(z / T)`` for any logits ``z`` of ``p`` (the per-row
log-normaliser cancels), so a file of probabilities loses nothing. T is fitted on the validation hold-out's
predictions by minimising their NLL, then applied to the test predictions (Guo et al., 2017).

Intervals (:func:`bootstrap`, :func:`paired_bootstrap`): ECE and NLL, before and after temperature scaling, on the
face bootstrap's resampled ids (:func:`fer_bench.evaluation.stats.resample_ids`: the same ids as the metrics'
intervals), the seeds' mean per resample. The temperature stays the one fitted on the hold-out: the interval is the test
set's sampling error, not that of the fit.

Example:
    >>> p = np.array([[0.9, 0.1], [0.6, 0.4]])
    >>> round(ece(p, np.array([0, 1])), 1)  # bins (0.867, 0.933]: conf 0.9, acc 1; (0.533, 0.6]: conf 0.6, acc 0
    35.0
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from fer_bench.evaluation import stats

N_BINS = 15  # equal-width confidence bins, as in Guo et al. (2017)
LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))  # temperatures outside these mean a broken model, not calibration
_TINY = float(np.finfo(np.float32).tiny)  # float32 probabilities that underflowed to 0 stay finite in log space


def _bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each confidence: bin i holds (i / n, (i + 1) / n]."""
    return np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Per bin: sample count, mean confidence and accuracy (NaN for empty bins)."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    conf, correct = probs.max(1), (probs.argmax(1) == labels).astype(np.float64)
    b = _bins(conf, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"count": count, "conf": np.bincount(b, conf, n_bins) / count,
                "acc": np.bincount(b, correct, n_bins) / count}  # fmt: skip


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error in percent: Σ_bins (n_bin / N) · |accuracy − mean confidence|."""
    r = reliability(probs, labels, n_bins)
    full = r["count"] > 0
    return float(np.sum(r["count"][full] / r["count"].sum() * np.abs(r["acc"][full] - r["conf"][full])) * 100)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class, in nats."""
    p = np.asarray(probs, np.float64)[np.arange(len(labels)), np.asarray(labels, np.int64)]
    return float(-np.mean(np.log(np.maximum(p, _TINY))))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: Σ_classes (p − one-hot)², averaged over samples (0 best, 2 worst)."""
    p = np.asarray(probs, np.float64)
    onehot = np.eye(p.shape[1])[np.asarray(labels, np.int64)]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the probabilities at temperature T (T > 1 softens, T < 1 sharpens)."""
    z = np.log(np.maximum(np.asarray(probs, np.float64), _TINY)) / temperature
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the NLL of ``scale(probs, T)``: a bounded 1-D search over log T."""
    res = minimize_scalar(lambda log_t: nll(scale(probs, np.exp(log_t)), labels), bounds=LOG_T_BOUNDS,
                          method="bounded", options={"xatol": 1e-5})  # fmt: skip
    return float(np.exp(res.x))


def summary(probs: np.ndarray, labels: np.ndarray, valid: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """``ece`` (%), ``nll``, ``brier``; with validation ``(probs, labels)`` also ``temperature`` and the three
    figures of the test probabilities scaled by it (``ece_ts``, ``nll_ts``, ``brier_ts``)."""
    out = {"ece": ece(probs, labels), "nll": nll(probs, labels), "brier": brier(probs, labels)}
    if valid is not None:
        t = fit_temperature(*valid)
        scaled = scale(probs, t)
        out |= {"temperature": t, "ece_ts": ece(scaled, labels), "nll_ts": nll(scaled, labels),
                "brier_ts": brier(scaled, labels)}  # fmt: skip
    return out


def line_probs(probs: list[np.ndarray], valid: list[tuple[np.ndarray, np.ndarray] | None]) -> dict[str, list]:
    """A line's test probabilities per seed (``""``) and, when every seed has validation predictions, scaled by each
    seed's fitted temperature (``"_ts"``): the sets whose ECE and NLL get intervals."""
    out = {"": list(probs)}
    if valid and all(v is not None for v in valid):
        out["_ts"] = [scale(p, fit_temperature(*v)) for p, v in zip(probs, valid, strict=True)]
    return out


def _resampled_run(probs: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    """ECE (%) and NLL of each row of resampled ids ``idx`` (B × N): ECE = Σ_bins |Σ (correct − conf)| / N."""
    p = np.asarray(probs, np.float64)
    conf, correct = p.max(1), (p.argmax(1) == labels).astype(np.float64)
    loss = -np.log(np.maximum(p[np.arange(len(labels)), labels], _TINY))
    b, n = idx.shape
    flat = (np.arange(b)[:, None] * N_BINS + _bins(conf, N_BINS)[idx]).ravel()
    gap = np.bincount(flat, (correct - conf)[idx].ravel(), minlength=b * N_BINS).reshape(b, N_BINS)
    return {"ece": np.abs(gap).sum(1) / n * 100, "nll": loss[idx].mean(1)}


def _figures(line: dict[str, list], labels: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of ``idx``, the seeds' mean ECE and NLL of each of the line's sets (``ece``, ``nll``, ``ece_ts``…)."""
    out = {}
    for suffix, runs in line.items():
        per_run = [_resampled_run(p, labels, idx) for p in runs]
        out |= {m + suffix: np.mean([r[m] for r in per_run], axis=0) for m in ("ece", "nll")}
    return out


def _resampled(line: dict[str, list], labels: np.ndarray, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    parts = [_figures(line, labels, idx) for idx in stats.resample_ids(len(labels), n_boot, seed)]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def bootstrap(line: dict[str, list], labels: np.ndarray, *, n_boot: int = stats.N_BOOT, seed: int = stats.SEED,
              level: float = stats.LEVEL) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Percentile intervals of ECE and NLL (``ece``, ``nll``; ``ece_ts``, ``nll_ts`` when scaled) of a line's
    :func:`line_probs`."""
    boot = _resampled(line, np.asarray(labels, np.int64), n_boot, seed)
    return {key: stats.percentile(v, level) for key, v in boot.items()}


def paired_bootstrap(line_a: dict[str, list], line_b: dict[str, list], labels: np.ndarray, *,
                     n_boot: int = stats.N_BOOT, seed: int = stats.SEED,
                     level: float = stats.LEVEL) -> dict[str, dict[str, float]]:  # fmt: skip
    """ΔECE and ΔNLL (A − B, seeds' means) with percentile intervals on the same resampled ids; the scaled figures
    only when both lines have them."""
    labels = np.asarray(labels, np.int64)
    boot_a, boot_b = _resampled(line_a, labels, n_boot, seed), _resampled(line_b, labels, n_boot, seed)
    every = np.arange(len(labels))[None]
    point_a, point_b = _figures(line_a, labels, every), _figures(line_b, labels, every)
    out = {}
    for key in (k for k in boot_a if k in boot_b):
        lo, hi = stats.percentile(boot_a[key] - boot_b[key], level)
        out[key] = {"diff": float(point_a[key][0] - point_b[key][0]), "lo": lo, "hi": hi}
    return out
