"""The corruption suite on a prepared checkpoint: top-1 and macro-F1 for every corruption × severity, the mean
corruption accuracy (mCA) with and without the cells at or below the majority-class rate, the table files and a grid
of one face under every corruption."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fer_bench.data import corruptions
from fer_bench.engine import steps as engine
from fer_bench.engine.predict import device_tensors
from fer_bench.evaluation import cross_dataset, predictions
from fer_bench.evaluation.metrics import classification_metrics
from fer_bench.utils.io import write_json

if TYPE_CHECKING:
    from fer_bench.experiment.rescoring import Prepared


@dataclass(frozen=True)
class CorruptionPlan:
    """Which corruptions at which severities, and the seed their random draws start from."""

    names: tuple[str, ...]
    severities: tuple[int, ...] = corruptions.SEVERITIES
    seed: int = 0


class _Corrupted:
    """The evaluation transform after a corruption; the n-th batch of a pass is batch index n of its seed."""

    def __init__(self, norm, name: str, severity: int, seed: int) -> None:
        self.norm, self.name, self.severity, self.seed, self.batch = norm, name, severity, seed, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = corruptions.corrupt(x, self.name, self.severity, seed=self.seed, batch=self.batch)
        self.batch += 1
        return self.norm(out)


CORRUPTION_FILES = ("corruptions.csv", "corruptions.json", "corruptions.png")


def mca_summary(table: list[dict[str, Any]], majority_rate: float, clean_top1: float | None) -> dict[str, Any]:
    """mCA (the mean top-1 over every cell of ``table``) and its ratio to the clean top-1, both also without the
    cells at or below the majority-class rate (a model that answers one class everywhere scores that much: such a
    cell measures a collapse, not a graded loss). Marks each cell's ``at_or_below_majority`` in place."""
    for r in table:
        r["at_or_below_majority"] = bool(r["top1"] <= majority_rate)
    above = [r["top1"] for r in table if not r["at_or_below_majority"]]
    mca = float(np.mean([r["top1"] for r in table]))
    mca_above = float(np.mean(above)) if above else None
    ratio = lambda v: round(v / clean_top1, 4) if clean_top1 and v is not None else None  # noqa: E731
    return {"mca": round(mca, 4), "mca_ratio": ratio(mca), "majority_rate": round(majority_rate, 4),
            "mca_above_majority": None if mca_above is None else round(mca_above, 4),
            "mca_above_majority_ratio": ratio(mca_above),
            "cells_at_or_below_majority": [f"{r['corruption']} {r['severity']}" for r in table
                                           if r["at_or_below_majority"]]}  # fmt: skip


def majority_rate(labels: np.ndarray) -> float:
    """The share (%) of the scored split's most frequent class: top-1 of always answering it."""
    return float(np.bincount(np.asarray(labels)).max() / len(labels) * 100)


def corruption_eval(p: Prepared, norm, plan: CorruptionPlan, out: Path, clean_top1: float) -> dict[str, Any]:
    """Top-1 and macro-F1 (plain single crop) per corruption and severity; mean corruption accuracy (mCA, the mean
    top-1 over every (corruption, severity) scored) and its ratio to the clean top-1, with and without the cells at
    or below the split's majority-class rate (:func:`mca_summary`). Writes ``corruptions.csv``,
    ``corruptions.json`` and the grid ``corruptions.png`` to ``out``; returns the summary the row keeps."""
    batches = engine.Batches(*device_tensors(p.data, p.idx, p.ctx.device), batch_size=p.ck.recipe.eval.batch_size)
    table = []
    for name in plan.names:
        spec = corruptions.CORRUPTIONS.get(name)
        for s in plan.severities:
            logits, y = engine.predict(p.model, batches.epoch(), transform=_Corrupted(norm, name, s, plan.seed),
                                       ctx=p.ctx)  # fmt: skip
            probs = predictions.softmax(logits)
            m = cross_dataset.metrics(probs, y, p.cross) if p.cross else classification_metrics(probs, y, p.classes)
            table.append({"corruption": name, "severity": s, "param": spec.params[s - 1], "param_name": spec.param,
                          "rule": corruptions.RULES[spec.rule][0], "top1": m["top1"],
                          "macro_f1": m["macro_f1"]})  # fmt: skip
    summary = mca_summary(table, majority_rate(p.data.labels[p.idx]), clean_top1) | {
        "clean_top1": clean_top1, "seed": plan.seed, "severities": list(plan.severities),
        "corruptions": list(plan.names), "batch_size": batches.batch_size, "files": list(CORRUPTION_FILES)}  # fmt: skip
    _write_table(out, table, summary)
    face = torch.from_numpy(np.ascontiguousarray(p.data.images[p.idx[:1]]))
    save_corruption_grid(face, plan, out / "corruptions.png")
    return summary


def _write_table(out: Path, table: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    with (out / "corruptions.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    write_json(out / "corruptions.json", summary | {"table": table})


GRID_CELL_PX = 120  # each face of the grid is drawn in a square of this many pixels


def grid_size(n_corruptions: int, n_severities: int) -> tuple[int, int]:
    """(width, height) in pixels of the grid PNG: a clean column and one per severity, a row per corruption."""
    return GRID_CELL_PX * (1 + n_severities), GRID_CELL_PX * n_corruptions


def save_corruption_grid(face: torch.Tensor, plan: CorruptionPlan, path: Path) -> None:
    """One face (a uint8 batch of one) under every corruption (rows) × severity (columns), the clean face first."""
    from fer_bench.report.mpl import pyplot

    plt = pyplot()
    rows, cols = len(plan.names), 1 + len(plan.severities)
    # NOTE: size in inches = cells, dpi = pixels per cell, no tight bbox: the PNG is exactly grid_size() pixels
    fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), dpi=GRID_CELL_PX, squeeze=False)
    for r, name in enumerate(plan.names):
        shots = [face] + [corruptions.corrupt(face, name, s, seed=plan.seed) for s in plan.severities]
        for c, img in enumerate(shots):
            ax = axes[r][c]
            ax.imshow(img[0].cpu().numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title("clean" if c == 0 else f"{name} {plan.severities[c - 1]}", fontsize=5, pad=1)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.05, hspace=0.3)
    fig.savefig(path, dpi=GRID_CELL_PX)
    plt.close(fig)
