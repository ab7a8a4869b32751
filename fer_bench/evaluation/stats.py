"""Uncertainty and paired comparisons of classification results, from per-sample predictions (numpy/scipy).

Every figure is on the 0–100 scale of :mod:`fer_bench.evaluation.metrics`. Predictions come as class indices, one array
per run (``(N,)``) or one per seed of a leaderboard line (``(S, N)``, the runs of one line on the same test ids in the
same order); a line's figure is the mean over its seeds, as in the leaderboard.

The methods, what each holds fixed and why these were chosen are in docs/protocol-and-statistics.md. In short:
:func:`paired_test` (the one significance test: a paired permutation test on the seed-averaged per-face
predictions, exact for top-1, :data:`N_PERM` rounds for macro-F1); :func:`bootstrap_interval` and
:func:`paired_bootstrap` (percentile bootstrap over faces, :data:`N_BOOT` resamples: intervals, never tests);
:func:`seed_summary` / :func:`seed_difference` (t and Welch intervals over seeds); :func:`claim` (when a difference is
claimed: the test and, with several seeds, the seeds' interval); :func:`minimum_detectable_effect`.

Library references: :func:`wilson` is statsmodels' ``proportion_confint(method="wilson")``, :func:`holm` is
``multipletests(method="holm")``, :func:`mcnemar` is statsmodels' McNemar test; the bootstrap and the permutation
test are checked against ``scipy.stats.bootstrap`` and ``scipy.stats.permutation_test`` in the tests.

Example:
    >>> y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    >>> lo, hi = bootstrap_interval(y, y, 3, n_boot=200)["top1"]
    >>> (lo, hi)
    (100.0, 100.0)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import stats as sst

N_BOOT = 2000  # resamples: a 95 % percentile interval's ends move by < 0.1 pt between seeds at N ≈ 3,600
N_PERM = 10_000  # permutation rounds: Monte Carlo SE of p = sqrt(p(1 − p) / N_PERM), 0.0022 at p = 0.05
SEED = 0
LEVEL = 0.95
ALPHA = 0.05
POWER = 0.8
EXACT_BELOW = 25  # discordant pairs below which McNemar's test is the exact binomial one
METHOD = ("paired permutation test on seed-averaged per-face predictions (each face's predictions swapped between "
          "the lines at random), two-sided; top-1 exact, macro-F1 sampled")  # fmt: skip
_CELLS = 4_000_000  # resampled labels per chunk: bounds memory (B × N confusion indices)


def _as_runs(pred: np.ndarray) -> np.ndarray:
    """(N,) → (1, N): one run is a line of one seed."""
    pred = np.asarray(pred, dtype=np.int64)
    return pred[None] if pred.ndim == 1 else pred


def from_confusion(cm: np.ndarray, average: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Top-1 and macro-F1 of confusion counts ``cm`` (..., k, k; rows true, columns predicted; counts may be
    fractional). An absent class's F1 counts 0 (scikit-learn's ``zero_division=0``); ``average``: the class indices
    macro-F1 averages (a cross-dataset row's shared classes, as scikit-learn's ``f1_score(labels=average)``)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    pred_n, true_n = cm.sum(-2), cm.sum(-1)
    precision = np.divide(tp, pred_n, out=np.zeros_like(tp), where=pred_n > 0)
    recall = np.divide(tp, true_n, out=np.zeros_like(tp), where=true_n > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    f1 = f1 if average is None else f1[..., np.asarray(average, dtype=np.int64)]
    return {"top1": tp.sum(-1) / cm.sum((-2, -1)) * 100, "macro_f1": f1.mean(-1) * 100}


def scores(labels: np.ndarray, pred: np.ndarray, k: int, average: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Top-1 and macro-F1 of each row of ``pred`` (B × N) against ``labels`` (B × N), vectorised over rows
    (macro-F1 over all ``k`` classes, or over ``average``: see :func:`from_confusion`)."""
    b = labels.shape[0]
    flat = (np.arange(b)[:, None] * k + labels) * k + pred
    cm = np.bincount(flat.ravel(), minlength=b * k * k).reshape(b, k, k).astype(np.float64)
    return from_confusion(cm, average)


def resample_ids(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's resampled ids (rows of ``n`` ids drawn with replacement), in chunks that bound memory; the
    same ``(n, n_boot, seed)`` gives the same ids to every caller (metrics and calibration alike)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS // max(n, 1))
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def _line_scores(labels: np.ndarray, runs: np.ndarray, idx: np.ndarray, k: int, average=None) -> dict[str, np.ndarray]:
    """Each resample's figures (rows of ``idx``), averaged over the line's runs (seeds)."""
    per_run = [scores(labels[idx], run[idx], k, average) for run in runs]
    return {m: np.mean([s[m] for s in per_run], axis=0) for m in ("top1", "macro_f1")}


def _resampled(labels, lines: list[np.ndarray], k: int, n_boot: int, seed: int, average=None) -> list[dict]:
    """Bootstrap figures of every line on the same resampled ids (so differences stay paired)."""
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in lines]
    for idx in resample_ids(len(labels), n_boot, seed):
        for part, runs in zip(parts, lines, strict=True):
            part.append(_line_scores(labels, runs, idx, k, average))
    return [{m: np.concatenate([p[m] for p in part]) for m in ("top1", "macro_f1")} for part in parts]


def percentile(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval's ends (numpy's linear interpolation, as ``scipy.stats.bootstrap``)."""
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bootstrap_interval(labels: np.ndarray, pred: np.ndarray, k: int, *, n_boot: int = N_BOOT, seed: int = SEED,
                       level: float = LEVEL,
                       average: np.ndarray | None = None) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Percentile bootstrap interval of top-1 and macro-F1 (of the seeds' mean when ``pred`` is S × N; macro-F1
    over the classes ``average`` when given, as :func:`scores`)."""
    labels = np.asarray(labels, dtype=np.int64)
    boot = _resampled(labels, [_as_runs(pred)], k, n_boot, seed, average)[0]
    return {m: percentile(v, level) for m, v in boot.items()}


def paired_bootstrap(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, k: int, *, n_boot: int = N_BOOT,
                     seed: int = SEED, level: float = LEVEL, average=None) -> dict[str, dict[str, float]]:  # fmt: skip
    """Interval of the difference A − B of the seeds' means (top-1, macro-F1), both lines on the same resampled
    ids; the lines may have different numbers of seeds. ``se``: the resamples' standard deviation (the difference's
    standard error over faces). An interval, not a test: significance is :func:`paired_test`'s."""
    labels = np.asarray(labels, dtype=np.int64)
    a, b = _as_runs(pred_a), _as_runs(pred_b)
    point_a, point_b = (_line_scores(labels, r, np.arange(len(labels))[None], k, average) for r in (a, b))
    boot_a, boot_b = _resampled(labels, [a, b], k, n_boot, seed, average)
    out = {}
    for m in ("top1", "macro_f1"):
        d = boot_a[m] - boot_b[m]
        lo, hi = percentile(d, level)
        out[m] = {"diff": float(point_a[m][0] - point_b[m][0]), "lo": lo, "hi": hi, "se": float(d.std(ddof=1))}
    return out


def soft_predictions(pred: np.ndarray, k: int) -> np.ndarray:
    """A line's per-face predictions averaged over its seeds: N × k shares (a one-hot row for one seed)."""
    runs = _as_runs(pred)
    return np.eye(k)[runs].mean(0)


def _exact_sign_flip(d: np.ndarray) -> float:
    """Two-sided p of Σ dᵢ under independent random signs, enumerated exactly; ``d`` integers."""
    d = d[d != 0]
    if not len(d):
        return 1.0
    d = d // np.gcd.reduce(np.abs(d))
    w = np.abs(d)
    values, counts = np.unique(w, return_counts=True)
    if len(values) == 1:  # one step size: a binomial (McNemar's exact test for one run each)
        return float(sst.binomtest(int(np.sum(d > 0)), len(d), 0.5).pvalue)
    pmf = np.ones(1)  # the pmf of Σ xᵢ wᵢ: convolved with v · Binomial(count, 1/2) for each step size v
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        pmf = _convolve_steps(pmf, sst.binom.pmf(np.arange(c + 1), c, 0.5), v)
    total, observed = int(w.sum()), abs(int(d.sum()))  # Σ sᵢwᵢ = 2 Σ xᵢwᵢ − total
    u = np.arange(len(pmf))
    return float(min(1.0, pmf[np.abs(2 * u - total) >= observed].sum()))


def _convolve_steps(pmf: np.ndarray, weights: np.ndarray, v: int) -> np.ndarray:
    """``pmf`` convolved with ``weights`` placed every ``v`` steps, as sums of non-negative terms: each entry keeps its
    relative precision however small (an FFT convolution adds noise of ~1e-16 to every entry, tiny p included)."""
    out = np.zeros(len(pmf) + v * (len(weights) - 1))
    for j, w in enumerate(weights):
        out[j * v : j * v + len(pmf)] += w * pmf
    return out


def _top1_exact(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Exact permutation p of the seed-mean top-1 difference: per face, (A's right seeds)·S_B − (B's)·S_A."""
    right_a, right_b = (np.sum(r == labels, axis=0) for r in (a, b))
    return _exact_sign_flip(right_a * len(b) - right_b * len(a))


def paired_test(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, k: int, *, n_perm: int = N_PERM,
                seed: int = SEED, average=None) -> dict[str, dict[str, float]]:  # fmt: skip
    """The project's significance test of A vs B (module docstring): per metric the difference A − B of the
    seed-averaged per-face predictions (``diff``), the two-sided ``p``, its Monte Carlo standard error ``mc_se`` (0
    when exact) and ``rounds`` (0 when exact).

    Macro-F1, vectorised: swapping face i moves its shares between the two confusion matrices, so each round's
    matrices are the observed ones plus (swap mask) @ (per-face change); p = (1 + rounds with |difference| ≥ the
    observed one) / (1 + rounds).
    """
    labels = np.asarray(labels, dtype=np.int64)
    a, b = _as_runs(pred_a), _as_runs(pred_b)
    n = len(labels)
    truth = np.eye(k)[labels]
    qa, qb = soft_predictions(a, k), soft_predictions(b, k)
    cm_a, cm_b = truth.T @ qa, truth.T @ qb
    change = (truth[:, :, None] * (qb - qa)[:, None, :]).reshape(n, k * k)
    obs = {m: float(v[0] - v[1]) for m, v in from_confusion(np.stack([cm_a, cm_b]), average).items()}
    rng = np.random.default_rng(seed)
    chunk, extreme = max(1, _CELLS // max(n, 1)), 0
    for start in range(0, n_perm, chunk):
        swap = (rng.random((min(chunk, n_perm - start), n)) < 0.5).astype(np.float64)
        shift = (swap @ change).reshape(-1, k, k)
        d = from_confusion(cm_a + shift, average)["macro_f1"] - from_confusion(cm_b - shift, average)["macro_f1"]
        extreme += int(np.sum(np.abs(d) >= abs(obs["macro_f1"]) - 1e-9))
    p = (1 + extreme) / (1 + n_perm)
    return {"top1": {"diff": obs["top1"], "p": _top1_exact(labels, a, b), "mc_se": 0.0, "rounds": 0},
            "macro_f1": {"diff": obs["macro_f1"], "p": p, "mc_se": float(np.sqrt(p * (1 - p) / n_perm)),
                         "rounds": n_perm}}  # fmt: skip


def face_counts(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, int]:
    """Faces by their seed-averaged correctness: A right more often than B (``a_better``), B more often, tied; for
    one run each these are McNemar's discordant cells."""
    a, b = _as_runs(pred_a), _as_runs(pred_b)
    d = np.mean(a == labels, axis=0) - np.mean(b == labels, axis=0)
    return {"a_better": int(np.sum(d > 0)), "b_better": int(np.sum(d < 0)), "tied": int(np.sum(d == 0))}


def minimum_detectable_effect(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference a two-sided level-``alpha`` test detects with probability ``power``, in the
    normal approximation: ``(z_{1−α/2} + z_{power}) × se`` (2.80 × se at α = 0.05, power 0.8).

    Example:
        >>> round(minimum_detectable_effect(1.0), 2)
        2.8
    """
    return float((sst.norm.ppf(1 - alpha / 2) + sst.norm.ppf(power)) * se)


def wilson(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion, in percent (statsmodels' ``proportion_confint``).

    Example:
        >>> [round(v, 2) for v in wilson(73, 100)]
        [63.57, 80.73]
    """
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    return float(lo * 100), float(hi * 100)


def seed_summary(values, level: float = LEVEL) -> dict[str, float]:
    """Mean, sample std and the t interval of the mean over seeds (NaN spread and interval for one seed)."""
    v = np.asarray(values, dtype=np.float64)
    n, mean = len(v), float(v.mean())
    if n < 2:
        return {"n": n, "mean": mean, "std": float("nan"), "lo": float("nan"), "hi": float("nan")}
    std = float(v.std(ddof=1))
    if std == 0:  # no spread over seeds (a repeated run): the interval is the point
        return {"n": n, "mean": mean, "std": std, "lo": mean, "hi": mean}
    ci = sst.ttest_1samp(v, 0.0).confidence_interval(level)
    lo, hi = ci.low, ci.high
    return {"n": n, "mean": mean, "std": std, "lo": float(lo), "hi": float(hi)}


def seed_difference(values_a, values_b, level: float = LEVEL) -> dict[str, float]:
    """The difference of two lines' means over their seeds with Welch's t interval (NaN when a side has one seed):
    the seed-to-seed part of the uncertainty, the test faces held fixed."""
    a, b = np.asarray(values_a, np.float64), np.asarray(values_b, np.float64)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "lo": float("nan"), "hi": float("nan")}
    if a.std() == b.std() == 0:  # no spread over seeds (a repeated run): the interval is the point
        return {"diff": diff, "lo": diff, "hi": diff}
    ci = sst.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return {"diff": diff, "lo": float(ci.low), "hi": float(ci.high)}


def claim(
    p: float, diff: float, seeds_lo: float = float("nan"), seeds_hi: float = float("nan"), alpha: float = ALPHA
) -> str:
    """The project's rule for claiming that line A differs from line B: ``"<"`` A below, ``">"`` A above, ``"≈"``
    no claim. A claim needs the paired test's p (Holm-adjusted where several comparisons share it) below ``alpha``
    **and** the seeds' Welch interval of A − B on the same side of 0: the test holds the trained runs fixed, the
    seeds' interval says the difference is not one seed's luck. With one seed on a side there is no such interval
    (NaN) and so no claim about the lines: a significant test then gives ``"‹"`` or ``"›"``, a difference of
    those trained runs only.

    Example:
        >>> claim(0.001, -2.0, -4.5, 0.5), claim(0.001, -2.0, -4.5, -0.3), claim(0.2, -2.0), claim(0.001, -2.0)
        ('≈', '<', '≈', '‹')
    """
    if not p < alpha or not np.isfinite(diff) or diff == 0:
        return "≈"
    below = diff < 0
    if np.isnan(seeds_lo) or np.isnan(seeds_hi):
        return "‹" if below else "›"
    return ("<" if below else ">") if (seeds_hi < 0 if below else seeds_lo > 0) else "≈"


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, exact_below: int = EXACT_BELOW) -> dict[str, object]:
    """McNemar's test of paired correctness of one run each (bool arrays of N; statsmodels' ``mcnemar``): the exact
    binomial p below ``exact_below`` discordant pairs, else chi-square with continuity correction. Several seeds
    are refused: pooling their tables counts each face once per seed (use :func:`paired_test`).

    Example:
        >>> r = mcnemar(np.array([1, 1, 1, 0], bool), np.array([0, 0, 1, 0], bool))
        >>> r["a_only"], r["b_only"], r["method"], r["p"]
        (2, 0, 'exact binomial', 0.5)
    """
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError("mcnemar takes one run each; for lines of several seeds use paired_test")
    table = {"both": int(np.sum(a & b)), "a_only": int(np.sum(a & ~b)), "b_only": int(np.sum(~a & b)),
             "neither": int(np.sum(~a & ~b))}  # fmt: skip
    exact = table["a_only"] + table["b_only"] < exact_below
    res = sm_mcnemar([[table["both"], table["a_only"]], [table["b_only"], table["neither"]]], exact=exact,
                     correction=True)  # fmt: skip
    method = "exact binomial" if exact else "chi-square with continuity correction"
    return table | {"method": method, "statistic": None if exact else float(res.statistic), "p": float(res.pvalue)}


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (statsmodels' ``multipletests``; :func:`claim` asks adjusted < α): family-wise
    error ≤ α for any dependence.

    Example:
        >>> holm([0.01, 0.04, 0.03]).tolist()
        [0.03, 0.06, 0.06]
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64)
    return multipletests(p, method="holm")[1] if len(p) else p
