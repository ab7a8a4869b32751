"""Which columns a leaderboard shows, and how its lines split into tables. Works on pandas; never imports torch.

The default table (terminal, Markdown, LaTeX, HTML, the page) fits a 120-column terminal with the registry's model
names: rank, model, weights, px, epochs, top-1 and macro-F1 with the half-width of their 95 % interval, the
difference to the best line, params, GMACs, inference img/s and seeds. Each (dataset, trained-on dataset, split) is
a table of its own, ranked on its own; what its lines share (dataset, split, device, precision, recipe) is said once
in a heading line, and a condition that differs within a table becomes a column. Everything else is behind named
groups (:data:`GROUPS`: ``--columns cost,calibration`` or ``all``); a group may be wider than a screen. CSV keeps
every column whatever is shown.

A line that did not converge says so: its epochs carry "†" and the note under the table says why; a table whose
lines are all snapshots says "snapshot, not converged" in its heading.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fer_bench.evaluation import metrics as metric_registry
from fer_bench.recipes import parts
from fer_bench.report import table_stats as leaderboard_stats
from fer_bench.utils.errors import ConfigError

CROSS = ["top1_shared", "n_lacking"]  # cross-dataset lines: top-1 on the shared classes' faces, faces of lacked classes
# Shown-only columns (text made from the line's numbers) and the number each one sorts by on the page.
DERIVED = {"weights_kind": "weights", "epochs_shown": "epochs", "top1_pm": "top1", "macro_f1_pm": "macro_f1",
           "to_best": "to_best_diff", "params_shown": "params_m", "source_recipe": "recipe",
           "infer_shown": "infer_model_img_s", "seeds_sd": "macro_f1_std"}  # fmt: skip
DEFAULT = ["model", "weights_kind", "img_size", "epochs_shown", "top1_pm", "macro_f1_pm", "to_best", "params_shown",
           "gmacs", "infer_shown", "seeds"]  # fmt: skip
HEADING = ["device_name", "precision", "recipe"]  # said once per table when its lines share it, else a column
PUBLISHED = ["model", "source_recipe", "split", "tta", "weights", "img_size", "top1_pm", "macro_f1_pm"]
PUBLISHED_MORE = ["epochs", "trained_on", "params_shown", "source"]  # the provenance group of the published table
HEADERS = {"weights_kind": "weights", "epochs_shown": "epochs", "top1_pm": "top-1 % ↑", "macro_f1_pm": "macro-F1 ↑",
           "to_best": "Δ best", "params_shown": "params ↓", "infer_shown": "img/s ↑",
           "convergence": "converged", "seeds_sd": "sd over seeds (top-1 / macro-F1)",
           "source_recipe": "recipe", "trained_on": "trained on", "top1_shared": "shared top-1 %",
           "n_lacking": "lacked faces"}  # fmt: skip
CONVERGED, NOT_CONVERGED, SNAPSHOT = "converged", "not converged", "snapshot, not converged"
# NOTE: fer_bench.experiment.row.plateau judges a run on its last max(5, 20 %) epochs against the ones before them: a
# run of at most this many epochs has no verdict (a snapshot). Rows from before the verdict was recorded are judged so
# too.
SNAPSHOT_EPOCHS = 5
MARK = "†"
CONVERGENCE_NOTE = {
    NOT_CONVERGED: "not converged: the schedule stopped early or validation macro-F1 still rose by more than 0.5 pt "
                   "over the last max(5, 20 %) epochs",
    SNAPSHOT: f"snapshot, not converged: {SNAPSHOT_EPOCHS} epochs or fewer, no plateau window to judge by; where "
              "training stood, not what the model reaches",
}  # fmt: skip
CROSS_NOTE = ("A model trained on another dataset: macro-F1 over the classes both datasets have; shared top-1: top-1 "
              "on those classes' faces; lacked faces: test faces of classes the model lacks "
              "(always wrong).")  # fmt: skip
TO_BEST_NOTE = ("±: in the plain top-1 % and macro-F1 columns, the half-width of the 95 % face-bootstrap interval "
                "(one decimal: the intervals are wider than a point; none where a row has no predictions file); in "
                "the other columns of a line of several seeds (TTA, weighted-F1, training), the sd over its seeds. "
                "Δ best: "
                "macro-F1 minus that of the table's best line; <: below it by the claim rule (the test and the seeds' "
                "interval; described below), ‹: the test alone, one seed (no claim), ≈: not distinguishable from "
                "it.")  # fmt: skip


def tta_columns() -> tuple[str, ...]:
    """Every registered TTA mode but the plain figure ("none"), which is the headline: TTA figures are columns of
    their own (read from the registry when asked, so a mode registered at run time gets its columns too)."""
    return tuple(t for t in parts.TTA_MODES if t != "none")


def _any(agg: pd.DataFrame, col: str) -> bool:
    return col in agg and agg[col].notna().any()


def class_order(col: str) -> int:
    from fer_bench.data.labels import FER2013_CLASSES

    name = col.removeprefix("f1_")
    return FER2013_CLASSES.index(name) if name in FER2013_CLASSES else 99


def _comparison(agg: pd.DataFrame) -> list[str]:
    # every statistic of leaderboard_stats that is not calibration: intervals, the test against the best line
    # then the headline metrics of the registry that the comparison group shows
    # the seeds' spread first: the face intervals hold the trained runs fixed, the seeds' sd is the run-to-run part
    shown = [c for c in leaderboard_stats.SHOWN if c not in _CALIBRATION]
    return ["seeds_sd", *shown, *metric_registry.shown_in("comparison")]


_CALIBRATION = ("ece", "ece_ts")


def _calibration(agg: pd.DataFrame) -> list[str]:
    return ["ece", *(["ece_ts"] if _any(agg, "ece_ts") else []), "nll", "brier"]


def _tta(agg: pd.DataFrame) -> list[str]:
    return [c for t in tta_columns() if _any(agg, f"top1_{t}") for c in (f"top1_{t}", f"macro_f1_{t}", f"gmacs_{t}")]


def _cost(agg: pd.DataFrame) -> list[str]:
    bench = ["bench_infer_img_s", "bench_train_img_s", "bench_conditions"] if _any(agg, "bench_infer_img_s") else []
    return ["train_e2e_img_s", "train_min", "val_near_best_min", *bench]


def _per_class(agg: pd.DataFrame) -> list[str]:
    return sorted((c for c in agg.columns if c.startswith("f1_") and not c.endswith("_std")), key=class_order)


def _robustness(agg: pd.DataFrame) -> list[str]:
    return ["mca", "mca_ratio", *(["mca_above_majority"] if _any(agg, "mca_above_majority") else [])]


def _provenance(agg: pd.DataFrame) -> list[str]:
    return ["recipe", "dataset", "split", "device_name", "precision", "weights", "protocol_hash", "convergence",
            *(["source"] if _any(agg, "source") else [])]  # fmt: skip


# Named column groups, in the order their columns follow the default ones.
GROUPS: dict[str, Callable[[pd.DataFrame], list[str]]] = {
    "comparison": _comparison, "tta": _tta, "cost": _cost, "calibration": _calibration,
    "robustness": _robustness,
    "per-class": _per_class, "provenance": _provenance,
}  # fmt: skip


def groups(names: Sequence[str] = (), *, per_class: bool = False) -> list[str]:
    """The group names asked for (``all``: every group), checked; ``per_class`` is the per-class group."""
    asked = [n.strip() for name in names for n in name.split(",") if n.strip()] + (["per-class"] if per_class else [])
    if "all" in asked:
        return list(GROUPS)
    for n in asked:
        if n not in GROUPS:
            close = difflib.get_close_matches(n, [*GROUPS, "all"], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"--columns: no column group {n!r}.{hint} The groups: {', '.join(GROUPS)}, all.")
    return [g for g in GROUPS if g in asked]


def convergence(converged: object, epochs_run: object) -> str | None:
    """A run's verdict: the row's own (``fer_bench.experiment.row.plateau``), else a snapshot when it ran too few
    epochs to have one; None when neither is known."""
    if isinstance(converged, bool | np.bool_):
        return CONVERGED if converged else NOT_CONVERGED
    if epochs_run is not None and not pd.isna(epochs_run) and int(epochs_run) <= SNAPSHOT_EPOCHS:
        return SNAPSHOT
    return None


def line_convergence(values: pd.Series) -> str | None:
    """A line's verdict from its runs': the worst one (a line of which one seed did not converge did not)."""
    known = set(values.dropna())
    return next((v for v in (NOT_CONVERGED, SNAPSHOT, CONVERGED) if v in known), None)


@dataclass(frozen=True)
class Table:
    """One ranked table: its heading line, its lines (rows of ``agg``) and its columns."""

    heading: str
    rows: pd.DataFrame
    columns: list[str]


def with_shown(agg: pd.DataFrame) -> pd.DataFrame:
    """``agg`` with the shown-only text columns of :data:`DERIVED` (the numbers stay as they were)."""
    out = agg.copy()
    blank = [None] * len(out)
    out["weights_kind"] = [str(w).split(":")[0] if isinstance(w, str) else w for w in out.get("weights", blank)]
    conv = out.get("convergence", blank)
    out["epochs_shown"] = [
        None if pd.isna(e) else _whole(e) + (f" {MARK}" if c in (NOT_CONVERGED, SNAPSHOT) else "")
        for e, c in zip(out.get("epochs", blank), conv, strict=True)
    ]
    for m in ("top1", "macro_f1"):
        out[f"{m}_pm"] = [_pm(r.get(m), r.get(f"{m}_ci_lo"), r.get(f"{m}_ci_hi")) for _, r in out.iterrows()]
    out["to_best_diff"], out["to_best"] = _to_best(out)
    out["source_recipe"] = [r.split(" (published)")[0] if isinstance(r, str) else r for r in out.get("recipe", blank)]
    out["infer_shown"] = [None if pd.isna(v) else f"{v:.0f}" for v in out.get("infer_model_img_s", blank)]
    out["params_shown"] = [None if pd.isna(v) else f"{v:.1f}M" for v in out.get("params_m", blank)]
    out["seeds_sd"] = [_seeds_sd(r) for _, r in out.iterrows()]
    return out


def _seeds_sd(r: pd.Series) -> str | None:
    """The sample sd over a line's seeds of top-1 and macro-F1 (``top1_std``, ``macro_f1_std``); None for one seed."""
    sd = [r.get(f"{m}_std") for m in ("top1", "macro_f1")]
    if any(v is None or pd.isna(v) for v in sd):
        return None
    return f"{sd[0]:.1f} / {sd[1]:.1f}"


def _whole(v: object) -> str:
    return str(int(v)) if isinstance(v, int | float | np.integer | np.floating) else str(v)  # "300+50": two phases


def _pm(value: object, lo: object, hi: object) -> str | None:
    if value is None or pd.isna(value):
        return None
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return f"{value:.1f}"
    return f"{value:.1f} ± {(hi - lo) / 2:.1f}"


def _to_best(agg: pd.DataFrame) -> tuple[list[float | None], list[str | None]]:
    """macro-F1 minus the best line's of the same table, with the significance mark where a test ran."""
    diffs, cells = [], []
    by = [c for c in ("dataset", "train_dataset", "split") if c in agg]
    best = agg.groupby(by, dropna=False, sort=False)["macro_f1"].transform("first") if by else agg["macro_f1"]
    for i, (_, r) in enumerate(agg.iterrows()):
        if r.get("device_name") == "published" or pd.isna(r.get("macro_f1")):
            diffs.append(None)
            cells.append(None)
            continue
        d = r.get("vs_best_diff") if _number(r.get("vs_best_diff")) else r["macro_f1"] - best.iloc[i]
        mark = r.get("sig") if isinstance(r.get("sig"), str) else ""
        diffs.append(float(d))
        first = i == 0 or not by or tuple(agg.iloc[i - 1][by]) != tuple(r[by])
        cells.append((mark if mark == "—" else "best") if first else f"{_signed(d)} {mark}".strip())  # —: alone
    return diffs, cells


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not pd.isna(v)


def _signed(v: float) -> str:
    return f"{v:+.1f}".replace("-", "−")  # a real minus sign, as wide as the plus


def tables(agg: pd.DataFrame, names: Sequence[str], ranks: list[str]) -> list[Table]:
    """The lines of ``agg`` (ranked; published rows last) as tables with their columns, in ``agg``'s order."""
    agg = with_shown(agg).assign(_rank=ranks)
    pub = agg["device_name"] == "published" if "device_name" in agg else pd.Series(False, index=agg.index)
    by = [c for c in ("dataset", "train_dataset", "split") if c in agg]
    out = [_measured(part, names) for _, part in agg[~pub].groupby(by, dropna=False, sort=False)] if by else []
    if pub.any():
        for dataset, part in agg[pub].groupby("dataset", dropna=False, sort=False):
            extra = [c for g in groups(names) if g in ("per-class", "provenance")
                     for c in (PUBLISHED_MORE if g == "provenance" else GROUPS[g](part))]  # fmt: skip
            heading = f"{dataset} · published figures: the papers' own protocols and splits, references, not ranked"
            out.append(Table(heading, part, _unique(PUBLISHED + extra)))
    return out


def _measured(part: pd.DataFrame, names: Sequence[str]) -> Table:
    r = part.iloc[0]
    fields = [str(r.get("dataset"))]
    if r.get("train_dataset") not in (None, r.get("dataset")) and not pd.isna(r.get("train_dataset")):
        fields.append(f"trained on {r['train_dataset']}")
    fields.append(f"{r.get('split')} split")
    varying = []
    for c in HEADING:
        values = list(dict.fromkeys(part[c].astype(object).where(part[c].notna(), "–"))) if c in part else ["–"]
        if len(values) == 1:
            fields.append(("recipe " if c == "recipe" else "") + str(values[0]))
        else:
            varying.append(c)
    status = set(part.get("convergence", pd.Series(dtype=object)))
    if len(status) == 1 and status & {NOT_CONVERGED, SNAPSHOT}:
        fields.append(status.pop())
    cross = CROSS if len(fields) > 1 and fields[1].startswith("trained on") else []
    # a registered metric of the default table beyond the two shown with their interval (top1_pm, macro_f1_pm)
    more = [m for m in metric_registry.shown_in("default") if f"{m}_pm" not in DEFAULT]
    cols = DEFAULT[:1] + varying + DEFAULT[1:6] + more + cross + DEFAULT[6:]
    if "recipe" in varying:  # the recipe column pays for itself: what every line shares moves to the heading
        part, shared = _mixed_recipes(part, fields)
        cols = [c for c in cols if c not in shared]
    cols += [c for g in groups(names) for c in GROUPS[g](part)]
    return Table(" · ".join(fields), part, _unique(cols))


SHARED_SHOWN = {"weights_kind": "{}", "img_size": "{:g} px", "seeds": "{:g} seeds"}  # heading form of a shared value
RECIPE_KEYED = 16  # a mixed table's recipe names longer than this are shown as keys (A, B...) named in the heading


def _mixed_recipes(part: pd.DataFrame, fields: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """A table whose lines mix recipes: the weights, input size and seeds every line shares join the heading
    ``fields``, and long recipe names become keys that the heading spells out, so the table keeps to 120 columns.

    Returns the lines (their recipe keyed where needed) and the columns that moved to the heading.
    """
    shared = []
    for col, form in SHARED_SHOWN.items():
        values = set(part[col].dropna()) if col in part else set()
        if len(values) == 1 and part[col].notna().all():
            fields.append(form.format(values.pop()))
            shared.append(col)
    recipes = list(dict.fromkeys(part["recipe"].astype(str)))
    if max(map(len, recipes)) > RECIPE_KEYED:
        keys = {r: chr(ord("A") + i) for i, r in enumerate(recipes)}
        fields.append("recipes " + ", ".join(f"{k} = {r}" for r, k in keys.items()))
        part = part.assign(recipe=part["recipe"].astype(str).map(keys))
    return part, shared


def _unique(cols: list[str]) -> list[str]:
    return list(dict.fromkeys(cols))


def notes(agg: pd.DataFrame) -> list[str]:
    """The notes every table of ``agg`` needs: what "vs best" and ± are, and why lines are marked †."""
    out = [TO_BEST_NOTE]
    found = set(agg["convergence"].dropna()) if "convergence" in agg else set()
    marked = [CONVERGENCE_NOTE[s] for s in (NOT_CONVERGED, SNAPSHOT) if s in found]
    if marked:
        out.append(f"{MARK} " + "; ".join(marked) + ".")
    if "train_dataset" in agg and (agg["train_dataset"].notna() & (agg["train_dataset"] != agg["dataset"])).any():
        out.append(CROSS_NOTE)
    return out
