"""Result rows → ranked tables. Works on plain dicts and pandas; never imports torch."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from fer_bench.metrics import HIGHER_IS_BETTER

# Column → (source key in a result row, header). Test metrics sit under row["test"].
COLUMNS: dict[str, tuple[str, str]] = {
    "model": ("model", "model"),
    "recipe": ("recipe", "recipe"),
    "split": ("split", "split"),
    "top1": ("test.top1", "top-1 %"),
    "macro_f1": ("test.macro_f1", "macro-F1"),
    "weighted_f1": ("test.weighted_f1", "weighted-F1"),
    "params_m": ("params", "params (M)"),
    "gmacs": ("gmacs", "GMACs"),
    "infer_img_s": ("infer_img_s", "infer img/s"),
    "train_img_s": ("train_img_s", "train img/s"),
    "device": ("device", "device"),
    "epochs": ("epochs_run", "epochs"),
}
# ↑/↓ next to every number, from the one direction table in metrics.
ARROWS = {
    col: "↑" if HIGHER_IS_BETTER[key] else "↓"
    for col in COLUMNS
    if (key := {"params_m": "params"}.get(col, col)) in HIGHER_IS_BETTER
}


def read_rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every ``result.json`` under the given files or folders."""
    rows = []
    for p in paths:
        files = sorted(p.rglob("result.json")) if p.is_dir() else [p]
        rows += [json.loads(f.read_text()) for f in files]
    return rows


def _get(row: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        row = row.get(part) if isinstance(row, dict) else None
    return row


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One line per row with the leaderboard columns, ranked by macro-F1 then top-1."""
    df = pd.DataFrame([{col: _get(r, key) for col, (key, _) in COLUMNS.items()} for r in rows])
    if df.empty:
        return df
    df["params_m"] = df["params_m"] / 1e6
    df = df.sort_values(["macro_f1", "top1"], ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def render(rows: list[dict[str, Any]], fmt: str = "github") -> str:
    """A ranked table in a tabulate format (``github``, ``latex``, ``html``...); headers carry ↑/↓."""
    df = rows_to_frame(rows)
    headers = ["#"] + [f"{COLUMNS[c][1]} {ARROWS.get(c, '')}".strip() for c in df.columns[1:]]
    return tabulate(df.values.tolist(), headers=headers, tablefmt=fmt, floatfmt=".2f", intfmt="d")
