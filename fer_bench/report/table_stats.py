"""Leaderboard columns from the rows' per-sample predictions: intervals, calibration and significance marks.

For every leaderboard line whose runs all have a predictions file (sha256 checked against the row: a mismatch is
an error, never a silent skip):

- ``top1_ci`` / ``macro_f1_ci``: 95 % percentile bootstrap over test samples (:data:`fer_bench.evaluation.stats.N_BOOT`
  resamples, seed :data:`fer_bench.evaluation.stats.SEED`); a line of several seeds takes the same resampled ids for
  every seed and the seeds' mean, the figure the table shows. The CSV adds the t interval of the mean over seeds.
- ``ece`` (15 equal-width bins, %), ``nll``, ``brier``, and after temperature scaling fitted on the validation
  hold-out's predictions (``ece_ts``, ``nll_ts``, ``brier_ts``, ``temperature``) when the runs wrote them: the
  mean over seeds.
- ``vs_best`` (shown; numbers in ``vs_best_diff``, ``vs_best_lo``, ``vs_best_hi``, ``vs_best_seeds_lo``,
  ``vs_best_seeds_hi``, ``p_vs_best``, ``p_vs_best_mc_se``, ``p_vs_best_holm``, ``sig``): within each (dataset,
  trained-on dataset, split) every line is compared with the best (rank 1) on macro-F1, the ranking figure: the
  difference line − best of the seeds' means with the 95 % paired face-bootstrap interval, and the p of the project's
  one test
  (:func:`fer_bench.evaluation.stats.paired_test`: a paired permutation test on the seed-averaged per-face predictions,
  the same call and so the same p as ``fer-bench compare``), Holm-corrected over the split's comparisons at
  α = :data:`fer_bench.evaluation.stats.ALPHA`; the mark is :func:`fer_bench.evaluation.stats.claim`: ``<`` below
  the best (that p < α and the lines' seeds' Welch interval below 0), ``‹`` the test alone (a line of one seed: no
  claim about the lines), ``≈`` not distinguishable from it; ``best`` for the best line, ``—`` for a line alone
  in its split (nothing to test), ``n/a`` where the lines cannot be compared (no predictions file, other faces).
  Lines are compared on all their seeds, whatever seeds the other line has. The face interval holds the trained
  runs fixed; when both lines have several seeds, ``vs_best_seeds_lo`` / ``vs_best_seeds_hi`` (also in the cell)
  are Welch's t interval of the difference of their per-seed macro-F1
  (:func:`fer_bench.evaluation.stats.seed_difference`, as ``compare``), the
  seed-to-seed part; NaN otherwise.
- ``vs_best_mde``: the smallest macro-F1 difference the test detects in that split (α = 0.05 per comparison,
  before Holm's correction, power 0.8): :func:`fer_bench.evaluation.stats.minimum_detectable_effect` of the median
  paired-bootstrap standard error of the split's differences to the best line; the table's note states it once per
  split.

Lines without predictions get "–" and a reason that the table's note repeats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fer_bench.evaluation import calibration, comparison, stats
from fer_bench.utils.errors import DataError

ALPHA = stats.ALPHA
SHOWN = ["top1_ci", "macro_f1_ci", "ece", "ece_ts", "vs_best"]  # table columns, after every other column
CSV = {  # a shown column → its CSV columns (numbers, not text)
    "top1_ci": ["top1_ci_lo", "top1_ci_hi", "top1_seeds_ci_lo", "top1_seeds_ci_hi"],
    "macro_f1_ci": ["macro_f1_ci_lo", "macro_f1_ci_hi", "macro_f1_seeds_ci_lo", "macro_f1_seeds_ci_hi"],
    "ece": ["ece", "ece_ci_lo", "ece_ci_hi", "nll", "brier"],
    "ece_ts": ["ece_ts", "ece_ts_ci_lo", "ece_ts_ci_hi", "nll_ts", "brier_ts", "temperature"],
    "vs_best": [
        "vs_best_diff",
        "vs_best_lo",
        "vs_best_hi",
        "vs_best_seeds_lo",
        "vs_best_seeds_hi",
        "sig",
        "p_vs_best",
        "p_vs_best_mc_se",
        "p_vs_best_holm",
        "vs_best_mde",
    ],
}
HEADERS = {"top1_ci": "top-1 95 % CI", "macro_f1_ci": "macro-F1 95 % CI", "ece": "ECE %", "nll": "NLL",
           "brier": "Brier", "ece_ts": "ECE % (T-scaled)", "vs_best": "macro-F1 − best (95 % CI)"}  # fmt: skip
NO_FILE = "no predictions file recorded (a row from before they were written)"
CALIBRATION = ("ece", "nll", "brier", "ece_ts", "nll_ts", "brier_ts", "temperature")


def _side(run: pd.Series) -> tuple[comparison.Side | None, str | None]:
    """One run's verified predictions, or None and why not."""
    path = run.get("predictions_path")
    if not isinstance(path, str) or not path:
        named = isinstance(run.get("predictions_sha256"), str)
        return None, "the row names a predictions file but not its folder (rows given without it)" if named else NO_FILE
    if "://" in path:
        return None, f"its predictions are in a remote artifact store ({path}): use --from-results on the run folders"
    p = Path(path)
    if not p.is_file():
        return None, f"its predictions file is not where the row says ({p.parent})"
    digest = run.get("predictions_sha256")
    arrays = comparison.read_verified(p, digest if isinstance(digest, str) else None, f"run {run.get('run_id')}")
    valid, vpath = None, p.parent / comparison.VALID_FILE
    if vpath.is_file():
        vdigest = run.get("predictions_valid_sha256")
        v = comparison.read_verified(vpath, vdigest if isinstance(vdigest, str) else None, f"run {run.get('run_id')}")
        valid = (v["probs"], v["labels"])
    average = run.get("macro_classes")
    average = tuple(int(i) for i in average.split(",")) if isinstance(average, str) and average else None
    side = comparison.Side(str(run.get("model")), p, arrays["probs"], arrays["labels"], arrays["ids"], valid)
    return dataclasses.replace(side, average=average), None


def _line_sides(runs: pd.DataFrame) -> tuple[dict[int, comparison.Side], str | None]:
    """Seed → predictions of a line's runs (one run per seed, the first), aligned to the sorted sample ids."""
    sides = {}
    for _, run in runs.drop_duplicates("seed").sort_values("seed").iterrows():
        side, reason = _side(run)
        if side is None:
            return {}, reason
        sides[int(run["seed"]) if pd.notna(run["seed"]) else len(sides)] = side
    aligned = comparison.paired_arrays(list(sides.values()), [])[0]
    return dict(zip(sides, aligned, strict=True)), None


def _line_columns(sides: dict[int, comparison.Side]) -> dict[str, object]:
    """Intervals and calibration of one line."""
    labels, k = next(iter(sides.values())).labels, next(iter(sides.values())).probs.shape[1]
    average = next(iter(sides.values())).average  # a cross-dataset line: macro-F1 over the shared classes
    ci = stats.bootstrap_interval(labels, np.stack([s.pred for s in sides.values()]), k, average=average)
    out: dict[str, object] = {}
    for m in ("top1", "macro_f1"):
        out |= {f"{m}_ci_lo": ci[m][0], f"{m}_ci_hi": ci[m][1], f"{m}_ci": f"[{ci[m][0]:.2f}, {ci[m][1]:.2f}]"}
    cal = [calibration.summary(s.probs, s.labels, s.valid) for s in sides.values()]
    out |= {key: float(np.mean([c[key] for c in cal])) for key in CALIBRATION if all(key in c for c in cal)}
    line = calibration.line_probs([s.probs for s in sides.values()], [s.valid for s in sides.values()])
    for key, (lo, hi) in calibration.bootstrap(line, labels).items():
        out |= {f"{key}_ci_lo": lo, f"{key}_ci_hi": hi} if key.startswith("ece") else {}
    return out


def _seed_intervals(runs: pd.DataFrame) -> dict[str, float]:
    """t interval of the mean over seeds (the CSV's ``*_seeds_ci_*``)."""
    per_seed = runs.groupby("seed", dropna=False)[["top1", "macro_f1"]].mean()
    out = {}
    for m in ("top1", "macro_f1"):
        s = stats.seed_summary(per_seed[m].to_numpy())
        out |= {f"{m}_seeds_ci_lo": s["lo"], f"{m}_seeds_ci_hi": s["hi"]}
    return out


def add_columns(frame: pd.DataFrame, agg: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``agg`` (ranked lines) with the interval, calibration and significance columns; ``predictions_note`` says
    why a line has none."""
    keys = list(keys)
    lines, records = [], []
    for key, runs in frame.groupby(keys, dropna=False, sort=False):
        sides, why = _line_sides(runs) if "predictions_path" in runs else ({}, NO_FILE)
        rec = dict(zip(keys, key, strict=True)) | {"_line": len(lines)} | _seed_intervals(runs)
        rec |= _line_columns(sides) if sides else {"predictions_note": why}
        lines.append(sides)
        records.append(rec)
    extra = pd.DataFrame.from_records(records)
    always = dict.fromkeys(c for shown in SHOWN if shown not in ("ece_ts", "vs_best") for c in [shown, *CSV[shown]])
    extra = extra.reindex(columns=[*extra.columns, *(c for c in always if c not in extra)])
    out = agg.merge(extra, on=keys, how="left", validate="one_to_one")
    return _marks(out, [lines[i] for i in out.pop("_line")])


MARKS = {"vs_best": None, "sig": None, "p_vs_best": np.nan, "p_vs_best_mc_se": np.nan, "p_vs_best_holm": np.nan,
         "vs_best_diff": np.nan, "vs_best_lo": np.nan, "vs_best_hi": np.nan, "vs_best_seeds_lo": np.nan,
         "vs_best_seeds_hi": np.nan, "vs_best_mde": np.nan}  # fmt: skip


def _marks(agg: pd.DataFrame, sides: list[dict[int, comparison.Side]]) -> pd.DataFrame:
    """The ``vs_best`` columns per (dataset, trained on, split), against the group's first (best) line."""
    agg = agg.assign(**MARKS)
    by = [c for c in ("dataset", "train_dataset", "split") if c in agg]
    for idx in agg.groupby(by, dropna=False, sort=False).indices.values():
        rows = agg.index[idx]
        if len(idx) == 1:
            agg.loc[rows[0], ["sig", "vs_best"]] = "—"
            continue
        best = sides[idx[0]]
        tested = {row: r for row, i in zip(rows[1:], idx[1:], strict=True) if (r := _vs_best(best, sides[i]))}
        agg.loc[rows, ["sig", "vs_best"]] = "n/a"
        if not tested:
            continue
        agg.loc[rows[0], ["sig", "vs_best"]] = "best"
        adjusted = stats.holm([r["p_vs_best"] for r in tested.values()])
        mde = stats.minimum_detectable_effect(float(np.median([r.pop("_se") for r in tested.values()])))
        for (row, r), p in zip(tested.items(), adjusted, strict=True):
            sig = stats.claim(p, r["vs_best_diff"], r["vs_best_seeds_lo"], r["vs_best_seeds_hi"])
            agg.loc[row, [*r, "p_vs_best_holm", "sig", "vs_best"]] = [*r.values(), p, sig, _cell(r, sig)]
        agg.loc[rows, "vs_best_mde"] = mde
    return agg


def _cell(r: dict, sig: str) -> str:
    """``−1.2 (−2.9, +0.4; seeds −4.1, +1.7) ≈``: the difference to the best line, its face interval, the seeds'
    interval when both lines have several seeds, and the mark."""
    diff, lo, hi, s_lo, s_hi = (
        f"{r[k]:+.1f}".replace("-", "−")
        for k in ("vs_best_diff", "vs_best_lo", "vs_best_hi", "vs_best_seeds_lo", "vs_best_seeds_hi")
    )
    seeds = "" if np.isnan(r["vs_best_seeds_lo"]) else f"; seeds {s_lo}, {s_hi}"
    return f"{diff} ({lo}, {hi}{seeds}) {sig}"


def _vs_best(best: dict[int, comparison.Side], other: dict[int, comparison.Side]) -> dict[str, float] | None:
    """A line against the best on macro-F1 (:func:`fer_bench.evaluation.comparison.paired`, as ``fer-bench compare``
    OTHER BEST runs it): None when either has no predictions or they were not scored on the same faces."""
    if not best or not other:
        return None
    try:
        sa, sb = comparison.paired_arrays(list(other.values()), list(best.values()))
    except DataError:
        return None
    r = comparison.paired(sa, sb, calibration_too=False)
    d, t = r["bootstrap"]["macro_f1"], r["test"]["macro_f1"]
    seeds = r.get("seeds", {}).get("macro_f1", {"lo": np.nan, "hi": np.nan})  # both lines of ≥ 2 seeds only
    return {"vs_best_diff": d["diff"], "vs_best_lo": d["lo"], "vs_best_hi": d["hi"], "vs_best_seeds_lo": seeds["lo"],
            "vs_best_seeds_hi": seeds["hi"], "p_vs_best": t["p"], "p_vs_best_mc_se": t["mc_se"],
            "_se": d["se"]}  # fmt: skip


def note(agg: pd.DataFrame) -> str:
    """What the columns are and why some lines have none (the text under the table)."""
    text = (f"95 % CI: percentile bootstrap over test faces ({stats.N_BOOT} resamples, seed {stats.SEED}; several "
            "seeds: their mean on the same resampled ids; the CSV adds the t interval over the seeds' own figures). "
            "ECE: 15 equal-width confidence bins, in % (T-scaled: temperature fitted on the validation hold-out's "
            "predictions; intervals in the CSV). macro-F1 − best: the line's difference to the best line of its "
            "split, seeds' means, with the paired face-bootstrap 95 % interval; the mark is the paired permutation "
            f"test on seed-averaged per-face predictions ({stats.N_PERM} rounds, two-sided, p and its Monte Carlo "
            f"error in the CSV; the same p as `fer-bench compare`), Holm-corrected over the split's lines at α = "
            f"{ALPHA}; the face interval holds the trained runs fixed, and where both lines have several seeds the "
            "cell adds the seeds' Welch t 95 % interval of the difference of their per-seed macro-F1 (as `fer-bench "
            "compare`), the seed-to-seed part. < below the best: the Holm-adjusted p < α and the seeds' interval "
            "below 0; ‹ the test alone says below but a line has one seed, so there is no seeds' interval and no "
            "claim about the lines, only about those trained runs; ≈ not distinguishable from the best; — alone in "
            "its split; n/a not comparable.")  # fmt: skip
    text += _mde_note(agg)
    if "predictions_note" in agg:
        missing = agg.dropna(subset=["predictions_note"])
        reasons = {}
        for _, r in missing.iterrows():
            reasons.setdefault(r["predictions_note"], []).append(str(r["model"]))
        text += "".join(f" – for {', '.join(models)}: {why}." for why, models in reasons.items())
    return text


def _mde_note(agg: pd.DataFrame) -> str:
    """Once per split: the smallest macro-F1 difference the test detects there."""
    if "vs_best_mde" not in agg or agg["vs_best_mde"].isna().all():
        return ""
    by = [c for c in ("dataset", "train_dataset", "split") if c in agg]
    parts = []
    for _, g in agg.dropna(subset=["vs_best_mde"]).groupby(by, dropna=False, sort=False):
        r = g.iloc[0]
        trained = r.get("train_dataset")
        other = f" (trained on {trained})" if pd.notna(trained) and trained != r.get("dataset") else ""
        parts.append(f"{r.get('dataset')}{other} {r.get('split')} {r['vs_best_mde']:.1f} pt")
    return (f" Smallest macro-F1 difference the test detects at this test-set size (α = {ALPHA} per comparison, "
            f"before Holm's correction, power "
            f"{stats.POWER}; {stats.minimum_detectable_effect(1.0):.2f} × the median paired-bootstrap standard error "
            f"of the split's differences to the best line): {', '.join(parts)}; the test's part only, a claim needs "
            "the seeds' interval too, which with 3 seeds a side is usually the wider.")  # fmt: skip


def csv_columns(cols: list[str]) -> list[str]:
    """The table's columns with each shown statistic replaced by its numeric CSV columns."""
    return [c for col in cols for c in CSV.get(col, [col])]
