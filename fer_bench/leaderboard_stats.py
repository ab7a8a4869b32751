"""Leaderboard columns from the rows' per-sample predictions: intervals, calibration and significance marks.

For every leaderboard line whose runs all have a predictions file (sha256 checked against the row: a mismatch is
an error, never a silent skip):

- ``top1_ci`` / ``macro_f1_ci``: 95 % percentile bootstrap over test samples (:data:`fer_bench.stats.N_BOOT`
  resamples, seed :data:`fer_bench.stats.SEED`); a line of several seeds takes the same resampled ids for every
  seed and the seeds' mean, the figure the table shows. The CSV adds the t interval of the mean over seeds.
- ``ece`` (15 equal-width bins, %), ``nll``, ``brier``, and after temperature scaling fitted on the validation
  hold-out's predictions (``ece_ts``, ``nll_ts``, ``brier_ts``, ``temperature``) when the runs wrote them: the
  mean over seeds.
- ``sig``: within each (dataset, trained-on dataset, split), the best line (rank 1) is ``best``; every other line
  is compared with it on macro-F1, the ranking figure, by a paired permutation test on the same sample ids
  (:func:`fer_bench.stats.paired_permutation`; seeds paired by seed, the pairs' differences averaged), two-sided,
  and Holm's correction over the split's comparisons at α = :data:`ALPHA`:
  ``≈`` not significantly different from the best, ``<`` significantly below it.

Lines without predictions get "–" and a reason that the table's note repeats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fer_bench import calibration, comparison, stats

ALPHA = 0.05
SHOWN = ["top1_ci", "macro_f1_ci", "ece", "ece_ts", "sig"]  # table columns, after every other column
CSV = {  # a shown column → its CSV columns (numbers, not text)
    "top1_ci": ["top1_ci_lo", "top1_ci_hi", "top1_seeds_ci_lo", "top1_seeds_ci_hi"],
    "macro_f1_ci": ["macro_f1_ci_lo", "macro_f1_ci_hi", "macro_f1_seeds_ci_lo", "macro_f1_seeds_ci_hi"],
    "ece": ["ece", "nll", "brier"],
    "ece_ts": ["ece_ts", "nll_ts", "brier_ts", "temperature"],
    "sig": ["sig", "p_vs_best"],
}
HEADERS = {"top1_ci": "top-1 95 % CI", "macro_f1_ci": "macro-F1 95 % CI", "ece": "ECE %", "nll": "NLL",
           "brier": "Brier", "ece_ts": "ECE % (T-scaled)", "sig": "≈ best"}  # fmt: skip
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
    """Seed → predictions of a line's runs (one run per seed, the first), aligned to one sample order."""
    sides = {}
    for _, run in runs.drop_duplicates("seed").sort_values("seed").iterrows():
        side, reason = _side(run)
        if side is None:
            return {}, reason
        sides[int(run["seed"]) if pd.notna(run["seed"]) else len(sides)] = side
    first = next(iter(sides.values()))
    return {s: comparison.align(first, side) for s, side in sides.items()}, None


def _line_columns(sides: dict[int, comparison.Side]) -> dict[str, object]:
    """Intervals and calibration of one line."""
    labels, k = next(iter(sides.values())).labels, next(iter(sides.values())).probs.shape[1]
    average = next(iter(sides.values())).average  # a cross-dataset line: macro-F1 over the shared classes
    ci = stats.bootstrap_interval(labels, np.stack([s.pred for s in sides.values()]), k, average=average)
    out: dict[str, object] = {}
    for m in ("top1", "macro_f1"):
        out |= {f"{m}_ci_lo": ci[m][0], f"{m}_ci_hi": ci[m][1], f"{m}_ci": f"[{ci[m][0]:.2f}, {ci[m][1]:.2f}]"}
    cal = [calibration.summary(s.probs, s.labels, s.valid) for s in sides.values()]
    return out | {key: float(np.mean([c[key] for c in cal])) for key in CALIBRATION if all(key in c for c in cal)}


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
    always = dict.fromkeys(c for shown in SHOWN if shown not in ("ece_ts", "sig") for c in [shown, *CSV[shown]])
    extra = extra.reindex(columns=[*extra.columns, *(c for c in always if c not in extra)])
    out = agg.merge(extra, on=keys, how="left", validate="one_to_one")
    return _marks(out, [lines[i] for i in out.pop("_line")])


def _marks(agg: pd.DataFrame, sides: list[dict[int, comparison.Side]]) -> pd.DataFrame:
    """``sig`` and ``p_vs_best`` (Holm-adjusted) per (dataset, trained on, split), against the group's first (best)
    line."""
    agg = agg.assign(sig=None, p_vs_best=np.nan)
    by = [c for c in ("dataset", "train_dataset", "split") if c in agg]
    groups = agg.groupby(by, dropna=False, sort=False).indices
    for idx in groups.values():
        best = sides[idx[0]]
        if not best:
            continue
        agg.loc[agg.index[idx[0]], "sig"] = "best"
        tested = [(i, _p_vs(best, sides[i])) for i in idx[1:] if sides[i]]
        tested = [(i, p) for i, p in tested if p is not None]
        if not tested:
            continue
        adjusted = stats.holm([p for _, p in tested])
        for (i, _), p in zip(tested, adjusted, strict=True):
            agg.loc[agg.index[i], ["sig", "p_vs_best"]] = ["≈" if p > ALPHA else "<", p]
    return agg


def _p_vs(best: dict[int, comparison.Side], other: dict[int, comparison.Side]) -> float | None:
    """Two-sided paired-permutation p of the macro-F1 difference; seeds paired by seed (else in seed order).
    None when the two lines were not scored on the same samples."""
    common = sorted(set(best) & set(other))
    pairs = [(best[s], other[s]) for s in common] or list(zip(best.values(), other.values(), strict=False))
    a0, b0 = pairs[0]
    if len(a0.ids) != len(b0.ids) or set(a0.ids.tolist()) != set(b0.ids.tolist()):
        return None
    pa = np.stack([a.pred for a, _ in pairs])
    pb = np.stack([comparison.align(a, b).pred for a, b in pairs])
    return stats.paired_permutation(a0.labels, pa, pb, a0.probs.shape[1], average=a0.average)["macro_f1"]


def note(agg: pd.DataFrame) -> str:
    """What the columns are and why some lines have none (the text under the table)."""
    text = (f"95 % CI: percentile bootstrap over test samples ({stats.N_BOOT} resamples, seed {stats.SEED}; several "
            "seeds: their mean on the same resampled ids). ECE: 15 equal-width confidence bins, in % (T-scaled: "
            "temperature fitted on the validation hold-out's predictions). ≈ best: not significantly different from "
            f"the best line of its split in macro-F1 (paired permutation test on the same sample ids, {stats.N_BOOT} "
            f"rounds, seeds paired by seed, two-sided, α = {ALPHA}, Holm-corrected over the split's lines); <: "
            "significantly below it.")  # fmt: skip
    if "predictions_note" in agg:
        missing = agg.dropna(subset=["predictions_note"])
        reasons = {}
        for _, r in missing.iterrows():
            reasons.setdefault(r["predictions_note"], []).append(str(r["model"]))
        text += "".join(f" – for {', '.join(models)}: {why}." for why, models in reasons.items())
    return text


def csv_columns(cols: list[str]) -> list[str]:
    """The table's columns with each shown statistic replaced by its numeric CSV columns."""
    return [c for col in cols for c in CSV.get(col, [col])]
