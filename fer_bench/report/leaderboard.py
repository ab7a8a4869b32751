"""Result rows → aggregated, ranked tables. Works on dicts and pandas; never imports torch or mlflow.

Rows come from result JSON files (``fer-bench run`` output) or from MLflow (``tracking.search_model_runs``); both
are normalised to one frame with the same columns (:mod:`fer_bench.report.frames`), so the two give the same table.
The headline metrics' headers, arrows and number formats are the metric registry's
(:data:`fer_bench.evaluation.metrics.METRICS`). A leaderboard line is one
(model, protocol hash, dataset scored, dataset trained on, split, device model): seeds are averaged (mean ± std) only
within a line, rows of different protocols are never averaged, and each split is ranked on its own (macro-F1, then
top-1); a model scored on another dataset than it was trained on is ranked apart from that dataset's own rows, with
its top-1 on the shared classes' faces and the number of faces whose class it lacks.

The headline figures are plain single-crop; test-time augmentation has columns of its own with its cost. Each
throughput column says what it measured: the run's end-to-end training img/s, the run's model-only inference
img/s (batch 64), and, when `fer-bench bench` measured the same model, size, device model and precision, its
model-only figures with their batch size and memory format.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import tabulate as tabulate_module
from tabulate import tabulate

from fer_bench.evaluation import metrics as metric_registry
from fer_bench.report import columns as layout
from fer_bench.report import table_stats as leaderboard_stats
from fer_bench.report.frames import (  # noqa: F401 (re-exported: callers read rows through this module)
    BENCH,
    CROSS,
    DESCRIBE,
    KEYS,
    RUN_KEYS,
    apply_bench,
    apply_corruptions,
    bench_frame_from_csv,
    frame_from_mlflow,
    frame_from_rows,
    learning_curve,
    read_rows,
    tta_columns,
    value_columns,
)
from fer_bench.report.published import PUBLISHED, published_frame

# Lines are ranked (and marked ≈ best) within a group: a model scored on another dataset than it was trained on
# (`fer-bench eval --dataset`, its macro-F1 over the shared classes) is never ranked against the dataset's own rows.
RANK_GROUP = ["dataset", "train_dataset", "split"]
# FER2013's PrivateTest is the field's test split (PublicTest its usual validation): its table comes first
SPLIT_ORDER = {"private": 0, "public": 1, "test": 2}
HEADERS = {
    "model": "model", "recipe": "recipe", "dataset": "dataset", "split": "split", "img_size": "px",
    "epochs": "epochs", "weights": "weights", "precision": "precision", "params_m": "params M", "gmacs": "GMACs",
    "infer_model_img_s": "infer img/s (run, model-only, b64)",
    "train_e2e_img_s": "train img/s (run, end-to-end)",
    "train_min": "train min (on its device)", "val_near_best_min": "min to val within 0.5 pt of best",
    "bench_infer_img_s": "bench infer img/s", "bench_train_img_s": "bench train img/s",
    "bench_conditions": "bench conditions", "device_name": "device", "protocol_hash": "protocol", "seeds": "seeds",
    "tta": "TTA", "mca": "mCA % (corruptions)", "mca_ratio": "mCA / clean", "train_dataset": "trained on",
    "mca_above_majority": "mCA % without cells ≤ majority class",
    "top1_shared": "top-1 % (shared classes' faces)", "n_lacking": "faces of classes the model lacks",
}  # fmt: skip
HEADERS |= leaderboard_stats.HEADERS | layout.HEADERS  # statistics (from the predictions files), shown-only columns
FORMATS = {"md": "github", "latex": "latex_booktabs", "html": "html"}
WIDTH = 120  # the terminal the default table fits: notes wrap at it too
PUBLISHED_DATASET = "fer2013"  # every row of fer_bench/configs/published.yaml is a FER2013 figure
FROZEN_NOTE = "‡ training img/s includes epochs with frozen parameters (their backward pass is shorter)."
MCA_NOTE = (
    "mCA: mean top-1 over every corruption and severity of the corruption suite (`fer-bench eval "
    "--corruptions all`, or a suite's corruptions option) on the same test images; mCA / clean: its ratio to "
    "that eval's clean top-1; – : the line was not scored under corruptions (pass the eval's --out with "
    "--corruption-runs)."
)
MCA_MAJORITY_NOTE = (
    " mCA without cells ≤ majority class: the same mean leaving out every cell whose top-1 is at or "
    "below the scored split's majority-class rate (a collapse to one class, not a graded loss)."
)
INFER_NOTE = ("img/s: the run's own inference throughput, model only, batch 64, on the heading's device; params: "
              "millions of parameters (M).")  # fmt: skip


def header(col: str) -> str:
    """A column's heading, without its arrow."""
    for t in tta_columns():
        names = {f"top1_{t}": f"top-1 {t} %", f"macro_f1_{t}": f"macro-F1 {t}", f"gmacs_{t}": f"GMACs {t}"}
        if col in names:
            return names[col]
    if col in metric_registry.METRICS:
        return metric_registry.METRICS.get(col).header
    return HEADERS.get(col, col.replace("f1_", "F1 "))


def arrow(col: str) -> str:
    """↑ (higher is better) or ↓ for a column, from :func:`fer_bench.evaluation.metrics.higher_is_better`."""
    if col.startswith("f1_") or col.endswith("_img_s"):
        return "↑"
    key = "params" if col == "params_m" else col
    for t in tta_columns():
        key = key.removesuffix(f"_{t}")
    key = key.removesuffix("_ts")  # calibration after temperature scaling: the same direction
    higher = metric_registry.higher_is_better(key)
    return "" if higher is None else "↑" if higher else "↓"


def _any(agg: pd.DataFrame, col: str) -> bool:
    return col in agg and bool(agg[col].notna().any())


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (model, protocol, dataset, split, device model), ranked per (dataset, trained on,
    split).

    Repeated runs of one seed in a line are averaged first: they are not independent seeds, so they never widen
    ``seeds`` or shrink the std.
    """
    if "train_dataset" not in frame:  # a frame built by hand: every row scored on the dataset it was trained on
        frame = frame.assign(train_dataset=frame.get("dataset"))
    metrics = value_columns()
    values = [c for c in frame.columns if c in metrics or c in BENCH or c.startswith(("f1_", "top1_", "macro_f1_",
                                                                                       "gmacs_"))]  # fmt: skip
    frame = _one_row_per_seed(frame, values)
    grouped = frame.groupby(KEYS, dropna=False, sort=False)
    mean = grouped[values].mean()
    std = grouped[values].std(ddof=1).add_suffix("_std")
    first = {c: "first" for c in [*DESCRIBE, "bench_conditions"] if c in frame}
    desc = grouped.agg(first) if first else None
    if "recipe" in frame:  # identical settings under two recipe names: say both
        desc["recipe"] = grouped["recipe"].agg(lambda s: " = ".join(dict.fromkeys(s.dropna().astype(str))))
    parts = [mean, std, grouped["seed"].nunique().rename("seeds")]
    if "train_frozen_epochs" in frame:
        parts.append(grouped["train_frozen_epochs"].max().rename("train_frozen_epochs"))
    if "convergence" in frame:
        parts.append(grouped["convergence"].agg(layout.line_convergence).rename("convergence"))
    agg = pd.concat([p for p in [desc, *parts] if p is not None], axis=1).reset_index()
    agg["_split"] = agg["split"].map(SPLIT_ORDER).fillna(9)
    agg["_cross"] = (agg["train_dataset"].notna() & (agg["train_dataset"] != agg["dataset"]) if "train_dataset" in agg
                     else False)  # a dataset's own rows first, then the models trained on another  # fmt: skip
    by = [c for c in ("dataset", "_cross", "train_dataset", "_split", "split") if c in agg]
    agg = agg.sort_values([*by, "macro_f1", "top1"], ascending=[True] * len(by) + [False, False], kind="stable",
                          na_position="last")  # fmt: skip
    agg = agg.drop(columns=["_split", "_cross"]).reset_index(drop=True)
    return leaderboard_stats.add_columns(frame, agg, KEYS)


def _one_row_per_seed(frame: pd.DataFrame, values: list[str]) -> pd.DataFrame:
    """Average the runs that share a line and a seed (a cell re-run into the same store) into one row."""
    keys = [*KEYS, "seed"]
    if not frame.duplicated(keys).any():
        return frame
    grouped = frame.groupby(keys, dropna=False, sort=False)
    rest = [c for c in frame.columns if c not in keys and c not in values]
    return pd.concat([grouped[values].mean(), grouped[rest].first()], axis=1).reset_index()[frame.columns]


def published_rows(path: Path = PUBLISHED) -> pd.DataFrame:
    """The papers' figures (checked by fer_bench.report.published) with their qualifiers (published.QUALIFIERS) as
    columns."""
    df = published_frame(path)
    df["device"], df["seeds"], df["recipe"] = "published", pd.NA, df["recipe"] + " (published)"
    return df


def _cell(row: pd.Series, col: str) -> str:
    v = row.get(col)
    if v is None or (not isinstance(v, list | tuple) and pd.isna(v)):
        return "–"
    if col == "protocol_hash":
        return str(v)[:8] if not str(v).startswith("unknown:") else "unknown"
    if not isinstance(v, float):
        return str(v)
    if col in ("img_size", "epochs", "seeds", "train_frozen_epochs", "n_lacking") and v.is_integer():  # NaN-padded ints
        return str(int(v))
    if col in metric_registry.METRICS:  # a headline metric: its registered format, for the mean and the std
        form, std = metric_registry.METRICS.get(col).fmt, row.get(f"{col}_std")
        return f"{v:{form}}" + (f" ± {std:{form}}" if std is not None and not pd.isna(std) else "")
    digits = (
        3
        if col.startswith("gmacs") or col == "mca_ratio" or col == "params_m" and abs(v) < 10
        else 1
        if ("img_s" in col)
        else 2
    )
    # fixed by the model, or one bench measurement shared by the line's seeds: no spread over seeds to show
    std = None if col.startswith(("gmacs", "bench_")) or col == "params_m" else row.get(f"{col}_std")
    text = f"{v:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and not pd.isna(std) else "")
    frozen = row.get("train_frozen_epochs")
    if col == "train_e2e_img_s" and frozen is not None and not pd.isna(frozen) and frozen > 0:
        text += " ‡"
    return text


def _ranks(agg: pd.DataFrame) -> list[str]:
    """1, 2, ... within each (dataset, trained on, split): splits, datasets and cross-dataset lines are never ranked
    together; "pub" for the papers' published numbers (references, not ranked)."""
    ranks, n = [], {}
    groups = agg.reindex(columns=RANK_GROUP).astype(object).fillna("").itertuples(index=False, name=None)
    for device, group in zip(agg["device_name"], groups, strict=True):
        if device == "published":
            ranks.append("pub")
            continue
        n[group] = n.get(group, 0) + 1
        ranks.append(str(n[group]))
    return ranks


def csv_columns(agg: pd.DataFrame) -> list[str]:
    """Every column a line has, for the CSV: identity and conditions, headline metrics, per-class F1, TTA with its
    cost, size, speed, device, the statistics, mCA."""
    cols = ["model", "recipe", "dataset", "split", "img_size", "epochs", "weights", "tta",
            *metric_registry.shown_in("csv")]  # fmt: skip
    if "train_dataset" in agg and (agg["train_dataset"].notna() & (agg["train_dataset"] != agg["dataset"])).any():
        cols.insert(cols.index("dataset"), "train_dataset")
        cols += CROSS
    groups = {g: layout.GROUPS[g](agg) for g in layout.GROUPS}
    cols += groups["per-class"] + groups["tta"] + ["params_m", "gmacs", "infer_model_img_s"] + groups["cost"]
    cols += ["precision", "device_name", "protocol_hash", "seeds", "convergence"]
    shown = [c for c in leaderboard_stats.SHOWN if c != "ece_ts" or (c in agg and agg[c].notna().any())]
    mca = ["mca", "mca_ratio"] + (["mca_above_majority"] if _any(agg, "mca_above_majority") else [])
    return cols + shown[:-1] + mca + shown[-1:] + (["source"] if "source" in agg else [])  # mCA before vs best


def render(agg: pd.DataFrame, fmt: str = "md", *, columns: Sequence[str] = (), per_class: bool = False,
           published: bool = False, title: str = "") -> str:  # fmt: skip
    """The ranked lines as Markdown, CSV, LaTeX or HTML: one table per (dataset, trained on, split), each under a
    heading line, with the default columns and the named groups of ``columns`` (``per_class``: the per-class group);
    CSV: one table of every column. Every numeric header carries ↑ or ↓. ``title`` (not in CSV) leads the tables:
    what the comparison holds fixed, e.g. a training budget."""
    names = layout.groups(columns, per_class=per_class)  # checked before anything is drawn
    agg = agg.assign(tta="none")  # measured headlines are plain single-crop, always
    if published:
        agg = with_published(agg)
    if fmt == "csv":
        return _csv(agg)
    text = "\n\n".join(_table(t, fmt) for t in layout.tables(agg, names, _ranks(agg)))
    if title:
        text = _title(title, fmt) + "\n\n" + text
    notes = layout.notes(agg) + [INFER_NOTE]
    if "train_frozen_epochs" in agg and (agg["train_frozen_epochs"].fillna(0) > 0).any():
        notes.append(FROZEN_NOTE)
    notes += [leaderboard_stats.note(agg), MCA_NOTE + (MCA_MAJORITY_NOTE if _any(agg, "mca_above_majority") else "")]
    return text + "".join(_note(n, fmt) for n in notes)


def _title(title: str, fmt: str) -> str:
    if fmt == "latex":
        return f"\\section*{{{_latex_escape(title)}}}"
    if fmt == "html":
        return f"<h2>{html.escape(title)}</h2>"
    return textwrap.fill(f"## {title}", WIDTH, break_long_words=False)


def _csv(agg: pd.DataFrame) -> str:
    cols = csv_columns(agg)
    cols, stats_cols = [c for c in cols if c not in leaderboard_stats.SHOWN], leaderboard_stats.csv_columns(cols)
    raw = [c for c in agg.columns if c in cols or c.removesuffix("_std") in cols]
    ordered = [c for c in cols if c in raw] + [f"{c}_std" for c in cols if f"{c}_std" in raw]
    ordered += [c for c in stats_cols if c in agg and c not in ordered]  # the statistics' columns come last
    out = agg.reindex(columns=["rank", *ordered]).assign(rank=_ranks(agg))
    return out.round(4).to_csv(index=False)


def _table(table: layout.Table, fmt: str) -> str:
    """One table under its heading line."""
    headers = ["#"] + [f"{header(c)} {arrow(c)}".strip() for c in table.columns]
    body = [[r["_rank"]] + [_cell(r, c) for c in table.columns] for _, r in table.rows.iterrows()]
    text = _tabulate(body, headers, fmt)
    if fmt == "latex":
        return f"\\noindent\\textbf{{{_latex_escape(table.heading)}}}\\par\n" + _latex_symbols(text)
    if fmt == "html":
        return f'<p class="heading"><strong>{html.escape(table.heading)}</strong></p>\n{text}'
    heading = textwrap.fill(f"**{table.heading}**", WIDTH, break_long_words=False, break_on_hyphens=False)
    return f"{heading}\n\n{_without_outer_pipes(text)}"


LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                 "}": r"\}", "·": r"$\cdot$"}  # fmt: skip


def _without_outer_pipes(text: str) -> str:
    """A GitHub table without its optional outer pipes: four columns of a 120-column line more for the figures."""
    return "\n".join(line[2:-2].rstrip() for line in text.splitlines())


def _tabulate(body: list[list[str]], headers: list[str], fmt: str) -> str:
    """tabulate without the two spaces it pads every header with (a column as wide as its widest text)."""
    padding, tabulate_module.MIN_PADDING = tabulate_module.MIN_PADDING, 0
    try:
        return tabulate(body, headers=headers, tablefmt=FORMATS[fmt], disable_numparse=True)
    finally:
        tabulate_module.MIN_PADDING = padding


def _latex_escape(text: str) -> str:
    """Text as LaTeX prints it (a heading line: device names hold "_")."""
    return _latex_symbols(re.sub("|".join(map(re.escape, LATEX_ESCAPES)), lambda m: LATEX_ESCAPES[m[0]], text))


def _latex_symbols(text: str) -> str:
    """Plain-LaTeX symbols, so the table compiles without unicode-math."""
    for a, b in (("±", r"$\pm$"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"), ("‡", r"$\ddagger$"),
                 ("≈", r"$\approx$"), ("≤", r"$\leq$"), ("†", r"$\dagger$"), ("−", "$-$"), ("—", "---"),
                 ("Δ", r"$\Delta$"), ("‹", r"$\prec$"), ("›", r"$\succ$")):  # fmt: skip
        text = text.replace(a, b)
    return text


def with_published(agg: pd.DataFrame) -> pd.DataFrame:
    """The ranked lines followed by the papers' published rows (``device_name`` "published": never ranked) of the
    datasets among the lines: the published table holds FER2013 figures only, so a FER+ table gets none."""
    pub = published_rows().rename(columns={"input_size": "img_size", "pretrained": "weights"})
    pub["dataset"] = pub["dataset"] if "dataset" in pub else PUBLISHED_DATASET
    pub = pub[pub["dataset"].isin(agg["dataset"])] if "dataset" in agg else pub
    pub["recipe"] = [
        r if t in (None, "unstated") or pd.isna(t) else f"{r}, trained on {t}"
        for r, t in zip(pub["recipe"], pub.get("trained_on", [None] * len(pub)), strict=True)
    ]
    return pd.concat([agg, pub.assign(device_name="published")], ignore_index=True)


def _note(note: str, fmt: str) -> str:
    """A note under the tables: a paragraph in HTML, a comment in LaTeX, plain text in Markdown; wrapped at
    :data:`WIDTH` columns but in HTML."""
    if fmt == "html":
        return f"\n\n<p>{note}</p>"
    if fmt == "latex":
        return "\n\n" + textwrap.fill(_latex_symbols(note), WIDTH, initial_indent="% ", subsequent_indent="% ")
    return "\n\n" + textwrap.fill(note, WIDTH, break_long_words=False, break_on_hyphens=False)
