"""Uncertainty and paired comparisons of classification results, from per-sample predictions (numpy/scipy only).

Every figure is on the 0–100 scale of :mod:`fer_bench.metrics`. Predictions come as class indices, one array per
run (``(N,)``) or one per seed of a leaderboard line (``(S, N)``, the runs of one line on the same test ids in the
same order); a line's figure is the mean over its seeds, as in the leaderboard.

- :func:`bootstrap_interval`: percentile bootstrap over test samples (seeded, vectorised); with several seeds every
  resample takes the same ids for every seed and averages their figures.
- :func:`paired_bootstrap`: the same resampled ids for both sides, so the interval of the difference carries the
  pairing; several seeds are paired by seed (seed s of A with seed s of B) and the pairs' differences averaged.
- :func:`paired_permutation`: p-values of "A and B are exchangeable" (each sample's two predictions swapped at
  random), valid however few samples differ; the leaderboard's significance marks use it on macro-F1.
- :func:`mcnemar`: McNemar's test on paired correctness, exact binomial when the discordant pairs are fewer than 25,
  else chi-square with continuity correction; several seed pairs are pooled into one table.
- :func:`wilson`, :func:`seed_summary` (mean ± std and the t interval over seeds), :func:`holm`.

Example:
    >>> y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    >>> lo, hi = bootstrap_interval(y, y, 3, n_boot=200)["top1"]
    >>> (lo, hi)
    (100.0, 100.0)
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sst

N_BOOT = 2000  # resamples: a 95 % percentile interval's ends move by < 0.1 pt between seeds at N ≈ 3,600
SEED = 0
LEVEL = 0.95
EXACT_BELOW = 25  # discordant pairs below which McNemar's test is the exact binomial one
_CELLS = 4_000_000  # resampled labels per chunk: bounds memory (B × N int64 confusion indices)


def _as_runs(pred: np.ndarray) -> np.ndarray:
    """(N,) → (1, N): one run is a line of one seed."""
    pred = np.asarray(pred, dtype=np.int64)
    return pred[None] if pred.ndim == 1 else pred


def scores(labels: np.ndarray, pred: np.ndarray, k: int, average: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Top-1 and macro-F1 of each row of ``pred`` (B × N) against ``labels`` (B × N), vectorised over rows.

    Macro-F1 averages all ``k`` classes, an absent one counting 0 (scikit-learn's ``zero_division=0``, as in
    :func:`fer_bench.metrics.classification_metrics`), or only the class indices ``average`` (a cross-dataset row:
    the classes the model and the dataset share, as scikit-learn's ``f1_score(labels=average)``).
    """
    b = labels.shape[0]
    flat = (np.arange(b)[:, None] * k + labels) * k + pred
    cm = np.bincount(flat.ravel(), minlength=b * k * k).reshape(b, k, k).astype(np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    precision = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    recall = np.divide(tp, cm.sum(2), out=np.zeros_like(tp), where=cm.sum(2) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    f1 = f1 if average is None else f1[:, np.asarray(average, dtype=np.int64)]
    return {"top1": tp.sum(1) / cm.sum((1, 2)) * 100, "macro_f1": f1.mean(1) * 100}


def _line_scores(labels: np.ndarray, runs: np.ndarray, idx: np.ndarray, k: int, average=None) -> dict[str, np.ndarray]:
    """Each resample's figures (rows of ``idx``), averaged over the line's runs (seeds)."""
    per_run = [scores(labels[idx], run[idx], k, average) for run in runs]
    return {m: np.mean([s[m] for s in per_run], axis=0) for m in ("top1", "macro_f1")}


def _resampled(labels, lines: list[np.ndarray], k: int, n_boot: int, seed: int, average=None) -> list[dict]:
    """Bootstrap figures of every line on the same resampled ids (so differences stay paired)."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS // max(n, 1))
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in lines]
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        for part, runs in zip(parts, lines, strict=True):
            part.append(_line_scores(labels, runs, idx, k, average))
    return [{m: np.concatenate([p[m] for p in part]) for m in ("top1", "macro_f1")} for part in parts]


def _percentile(values: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bootstrap_interval(labels: np.ndarray, pred: np.ndarray, k: int, *, n_boot: int = N_BOOT, seed: int = SEED,
                       level: float = LEVEL,
                       average: np.ndarray | None = None) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Percentile bootstrap interval of top-1 and macro-F1 (of the seeds' mean when ``pred`` is S × N; macro-F1
    over the classes ``average`` when given, as :func:`scores`)."""
    labels = np.asarray(labels, dtype=np.int64)
    boot = _resampled(labels, [_as_runs(pred)], k, n_boot, seed, average)[0]
    return {m: _percentile(v, level) for m, v in boot.items()}


def paired_bootstrap(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, k: int, *, n_boot: int = N_BOOT,
                     seed: int = SEED, level: float = LEVEL, average=None) -> dict[str, dict[str, float]]:  # fmt: skip
    """Interval of the difference A − B in top-1 and macro-F1, both sides on the same resampled ids.

    Runs are paired row by row (seed by seed); each resample's difference is the mean of the pairs' differences.
    ``p`` is the two-sided p-value of "no difference" from inverting the percentile interval (the smallest
    1 − level whose interval excludes 0), with the add-one rule, so it is never below 2 / (n_boot + 1).
    """
    labels = np.asarray(labels, dtype=np.int64)
    a, b = _as_runs(pred_a), _as_runs(pred_b)
    if a.shape != b.shape:
        raise ValueError(f"paired runs must have equal shapes, got {a.shape} and {b.shape}")
    point_a, point_b = (_line_scores(labels, r, np.arange(len(labels))[None], k, average) for r in (a, b))
    boot_a, boot_b = _resampled(labels, [a, b], k, n_boot, seed, average)
    out = {}
    for m in ("top1", "macro_f1"):
        d = boot_a[m] - boot_b[m]
        tail = min(np.sum(d <= 0), np.sum(d >= 0))
        lo, hi = _percentile(d, level)
        p = min(1.0, 2 * (tail + 1) / (n_boot + 1))
        out[m] = {"diff": float(point_a[m][0] - point_b[m][0]), "lo": lo, "hi": hi, "p": p}
    return out


def paired_permutation(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, k: int, *, n_perm: int = N_BOOT,
                       seed: int = SEED, average=None) -> dict[str, float]:  # fmt: skip
    """Two-sided p-values of "A and B are exchangeable" for top-1 and macro-F1: a paired permutation test.

    Each round swaps A's and B's predictions of a random half of the samples (the same samples for every seed pair)
    and recomputes the difference; p = (1 + rounds with |difference| ≥ the observed one) / (1 + rounds). Unlike a
    bootstrap p it stays valid when few samples differ: for top-1 it is McNemar's exact test, sampled.
    """
    labels = np.asarray(labels, dtype=np.int64)
    a, b = _as_runs(pred_a), _as_runs(pred_b)
    n, everything = len(labels), np.arange(len(labels))[None]
    observed = _diff(labels, a, b, everything, None, k, average)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS // max(n, 1))
    extreme = dict.fromkeys(observed, 0)
    for start in range(0, n_perm, chunk):
        swap = rng.random((min(chunk, n_perm - start), n)) < 0.5
        for m, d in _diff(labels, a, b, np.broadcast_to(everything, swap.shape), swap, k, average).items():
            extreme[m] += int(np.sum(np.abs(d) >= np.abs(observed[m][0]) - 1e-9))
    return {m: (1 + extreme[m]) / (1 + n_perm) for m in observed}


def _diff(labels, a, b, idx, swap, k, average=None) -> dict[str, np.ndarray]:
    """Per row of ``idx``: mean over seed pairs of A − B, with A's and B's predictions exchanged where ``swap``."""
    diffs = []
    for ra, rb in zip(a, b, strict=True):
        pa, pb = ra[idx], rb[idx]
        if swap is not None:
            pa, pb = np.where(swap, pb, pa), np.where(swap, pa, pb)
        sa, sb = scores(labels[idx], pa, k, average), scores(labels[idx], pb, k, average)
        diffs.append({m: sa[m] - sb[m] for m in sa})
    return {m: np.mean([d[m] for d in diffs], axis=0) for m in ("top1", "macro_f1")}


def wilson(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion, in percent.

    Example:
        >>> [round(v, 2) for v in wilson(73, 100)]
        [63.57, 80.73]
    """
    z = sst.norm.ppf(0.5 + level / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float((centre - half) * 100), float((centre + half) * 100)


def seed_summary(values, level: float = LEVEL) -> dict[str, float]:
    """Mean, sample std and the t interval of the mean over seeds (NaN spread and interval for one seed)."""
    v = np.asarray(values, dtype=np.float64)
    n, mean = len(v), float(v.mean())
    if n < 2:
        return {"n": n, "mean": mean, "std": float("nan"), "lo": float("nan"), "hi": float("nan")}
    std = float(v.std(ddof=1))
    half = float(sst.t.ppf(0.5 + level / 2, n - 1)) * std / np.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "lo": mean - half, "hi": mean + half}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, exact_below: int = EXACT_BELOW) -> dict[str, object]:
    """McNemar's test of paired correctness (bool arrays, N or S × N; seed pairs pooled into one table).

    ``a_only``: samples A classifies right and B wrong; ``b_only`` the reverse. Under "equally accurate" each
    discordant pair is a fair coin: the exact two-sided binomial p when they number fewer than ``exact_below``,
    else the chi-square statistic (|a_only − b_only| − 1)² / (a_only + b_only) with one degree of freedom.

    Example:
        >>> r = mcnemar(np.array([1, 1, 1, 0], bool), np.array([0, 0, 1, 0], bool))
        >>> r["a_only"], r["b_only"], r["method"], r["p"]
        (2, 0, 'exact binomial', 0.5)
    """
    a, b = np.asarray(correct_a, bool).ravel(), np.asarray(correct_b, bool).ravel()
    table = {"both": int(np.sum(a & b)), "a_only": int(np.sum(a & ~b)), "b_only": int(np.sum(~a & b)),
             "neither": int(np.sum(~a & ~b))}  # fmt: skip
    n01, n10 = table["a_only"], table["b_only"]
    discordant = n01 + n10
    if discordant < exact_below:
        p = sst.binomtest(n01, discordant, 0.5).pvalue if discordant else 1.0
        return table | {"method": "exact binomial", "statistic": None, "p": float(p)}
    stat = (abs(n01 - n10) - 1) ** 2 / discordant
    return table | {"method": "chi-square with continuity correction", "statistic": float(stat),
                    "p": float(sst.chi2.sf(stat, 1))}  # fmt: skip


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (reject where adjusted ≤ α): family-wise error ≤ α for any dependence.

    Example:
        >>> holm([0.01, 0.04, 0.03]).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = stepped
    return out
