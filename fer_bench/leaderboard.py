"""Result rows → aggregated, ranked tables and plots. Works on dicts and pandas; never imports torch or mlflow.

Rows come from result JSON files (``fer-bench run`` output) or from MLflow (``tracking.search_model_runs``);
both are normalised to one frame, aggregated as mean ± std over seeds and ranked by macro-F1, then top-1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from fer_bench.metrics import HIGHER_IS_BETTER
from fer_bench.published import PUBLISHED, published_frame

KEYS = ["model", "recipe", "split", "device"]  # one leaderboard line per distinct combination
METRICS = ["top1", "macro_f1", "weighted_f1", "params_m", "gmacs", "infer_img_s", "train_img_s"]
HEADERS = {
    "model": "model", "recipe": "recipe", "split": "split", "top1": "top-1 %", "macro_f1": "macro-F1",
    "weighted_f1": "weighted-F1", "params_m": "params (M)", "gmacs": "GMACs", "infer_img_s": "infer img/s",
    "train_img_s": "train img/s", "device": "device", "seeds": "seeds",
}  # fmt: skip
FORMATS = {"md": "github", "latex": "latex_booktabs", "html": "html"}


def arrow(col: str) -> str:
    """↑ (higher is better) or ↓ for a column, from the one direction table in :mod:`fer_bench.metrics`."""
    if col.startswith("f1_"):
        return "↑"
    key = "params" if col == "params_m" else col
    return ("↑" if HIGHER_IS_BETTER[key] else "↓") if key in HIGHER_IS_BETTER else ""


def read_rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every ``result.json`` under the given files or folders."""
    rows = []
    for p in paths:
        files = sorted(p.rglob("result.json")) if p.is_dir() else [p]
        rows += [json.loads(f.read_text()) for f in files]
    return rows


def frame_from_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Normalise result rows (JSON) to one line per run."""
    records = []
    for r in rows:
        rec = {k: r.get(k) for k in ("model", "recipe", "split", "device", "seed", "gmacs", "infer_img_s",
                                      "train_img_s", "recipe_hash")}  # fmt: skip
        rec["params_m"] = r["params"] / 1e6
        rec |= {k: v for k, v in r["test"].items() if k in ("top1", "macro_f1", "weighted_f1") or k.startswith("f1_")}
        records.append(rec)
    return pd.DataFrame.from_records(records)


def frame_from_mlflow(runs: pd.DataFrame) -> pd.DataFrame:
    """Normalise an ``mlflow.search_runs`` frame (child runs with result rows) to one line per run."""
    if runs.empty:
        return pd.DataFrame(columns=[*KEYS, "seed", *METRICS])
    out = pd.DataFrame({k: runs[f"tags.fer_bench.{k}"] for k in ("model", "recipe", "split", "device", "recipe_hash")})
    out["seed"] = pd.to_numeric(runs["tags.fer_bench.seed"])
    out["img_size"] = pd.to_numeric(runs["tags.fer_bench.img_size"])
    for m in ("top1", "macro_f1", "weighted_f1"):
        out[m] = runs[f"metrics.test_{m}"]
    out["params_m"] = runs["metrics.params"] / 1e6
    for m in ("gmacs", "infer_img_s", "train_img_s"):
        out[m] = runs.get(f"metrics.{m}")
    for col in runs.columns:
        if col.startswith("metrics.test_f1_"):
            out[col.removeprefix("metrics.test_")] = runs[col]
    return out.reset_index(drop=True)


def apply_bench(frame: pd.DataFrame, bench: pd.DataFrame) -> pd.DataFrame:
    """Replace each row's quick throughput figures by `fer-bench bench` medians for the same model, size and device.

    The newest bench run per (model, img_size, device kind) wins; rows without a matching bench keep their own.
    """
    if bench.empty or "img_size" not in frame:
        return frame
    b = pd.DataFrame({
        "model": bench["tags.fer_bench.model"], "img_size": pd.to_numeric(bench["tags.fer_bench.img_size"]),
        "device": bench["tags.fer_bench.device_name"].map(lambda d: "cpu" if "threads" in str(d) else "cuda"),
        "bench_infer": bench["metrics.infer_img_s_median"], "bench_train": bench["metrics.train_img_s_median"],
        "start": bench["start_time"],
    }).sort_values("start").drop_duplicates(["model", "img_size", "device"], keep="last")  # fmt: skip
    out = frame.merge(b.drop(columns="start"), on=["model", "img_size", "device"], how="left")
    out["infer_img_s"] = out["bench_infer"].fillna(out["infer_img_s"])
    out["train_img_s"] = out["bench_train"].fillna(out["train_img_s"])
    return out.drop(columns=["bench_infer", "bench_train"])


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (model, recipe, split, device), ranked by macro-F1 then top-1."""
    values = [c for c in frame.columns if c in METRICS or c.startswith("f1_")]
    grouped = frame.groupby(KEYS, dropna=False, sort=False)
    mean = grouped[values].mean()
    std = grouped[values].std(ddof=1).add_suffix("_std")
    agg = pd.concat([mean, std, grouped["seed"].nunique().rename("seeds")], axis=1).reset_index()
    return agg.sort_values(["macro_f1", "top1"], ascending=False, kind="stable", na_position="last").reset_index(
        drop=True
    )


def published_rows(path: Path = PUBLISHED) -> pd.DataFrame:
    """The papers' figures (checked by fer_bench.published) with their qualifiers (published.QUALIFIERS) as columns."""
    df = published_frame(path)
    df["device"], df["seeds"], df["recipe"] = "published", pd.NA, df["recipe"] + " (published)"
    return df


def _cell(row: pd.Series, col: str) -> str:
    v = row.get(col)
    if v is None or pd.isna(v):
        return "–"
    if not isinstance(v, float):
        return str(v)
    digits = 3 if col in ("params_m", "gmacs") and abs(v) < 10 else 1 if "img_s" in col else 2
    std = None if col in ("params_m", "gmacs") else row.get(f"{col}_std")  # fixed by the model: no spread to show
    return f"{v:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and not pd.isna(std) else "")


def _ranks(agg: pd.DataFrame) -> list[str]:
    """1, 2, ... for measured rows; "pub" for the papers' published numbers (reference, not ranked)."""
    ranks, n = [], 0
    for device in agg["device"]:
        n += device != "published"
        ranks.append("pub" if device == "published" else str(n))
    return ranks


def table_columns(agg: pd.DataFrame, per_class: bool = False) -> list[str]:
    cols = [*KEYS[:3], *METRICS, "device", "seeds"]
    if per_class:
        cols[6:6] = sorted((c for c in agg.columns if c.startswith("f1_") and not c.endswith("_std")),
                           key=_class_order)  # fmt: skip
    return cols


def _class_order(col: str) -> int:
    from fer_bench.data.labels import FER2013_CLASSES

    name = col.removeprefix("f1_")
    return FER2013_CLASSES.index(name) if name in FER2013_CLASSES else 99


def render(agg: pd.DataFrame, fmt: str = "md", *, per_class: bool = False, published: bool = False) -> str:
    """The ranked table as Markdown, CSV, LaTeX or HTML; every numeric header carries ↑ or ↓."""
    if published:
        agg = pd.concat([agg, published_rows()], ignore_index=True)
    cols = table_columns(agg, per_class)
    if fmt == "csv":
        raw = [c for c in agg.columns if c in cols or c.removesuffix("_std") in cols]
        ordered = [c for c in cols if c in raw] + [c for c in raw if c.endswith("_std")]
        out = agg.reindex(columns=["rank", *ordered]).assign(rank=_ranks(agg))
        return out.round(4).to_csv(index=False)
    headers = ["#"] + [f"{HEADERS.get(c, c.replace('f1_', 'F1 '))} {arrow(c)}".strip() for c in cols]
    body = [[rank] + [_cell(r, c) for c in cols] for rank, (_, r) in zip(_ranks(agg), agg.iterrows(), strict=True)]
    text = tabulate(body, headers=headers, tablefmt=FORMATS[fmt], disable_numparse=True)
    if fmt == "latex":  # plain-LaTeX symbols, so the table compiles without unicode-math
        text = text.replace("±", r"$\pm$").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")
    return text


def render_rows(rows: list[dict[str, Any]], fmt: str = "md") -> str:
    """Shortcut for ``fer-bench run``: rows → aggregated, ranked table."""
    return render(aggregate(frame_from_rows(rows)), fmt)


def pareto_plot(agg: pd.DataFrame, path: Path, *, x: str = "infer_img_s", y: str = "macro_f1") -> None:
    """macro-F1 against throughput, marker area ∝ parameters; the Pareto front joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = agg.dropna(subset=[x, y])
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=130)
    ax.scatter(df[x], df[y], s=20 + 6 * df["params_m"].fillna(1), alpha=0.6, edgecolors="k")
    for _, r in df.iterrows():
        ax.annotate(f"{r['model']}\n{r['recipe']}", (r[x], r[y]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    front = _pareto_front(df, x, y)
    ax.plot(front[x], front[y], "--", color="grey", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(f"{HEADERS[x]} ↑ (log)")
    ax.set_ylabel(f"{HEADERS[y]} ↑")
    ax.set_title("macro-F1 vs throughput (marker area ∝ parameters)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pareto_front(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    best, keep = -float("inf"), []
    for i, r in df.sort_values(x, ascending=False).iterrows():
        if r[y] > best:
            best = r[y]
            keep.append(i)
    return df.loc[keep].sort_values(x)
