"""The result row: what a run wrote, field by field, and the figures computed from its history (training time,
convergence, the plateau). :class:`ResultRow` is the schema; ``result.json`` holds one, and every reader (the
leaderboard, MLflow, the page) reads these keys."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from fer_bench.bench import cost
from fer_bench.engine.trainer import SELECT_BY
from fer_bench.evaluation import predictions
from fer_bench.experiment.protocol import sample_ids
from fer_bench.recipes.parts import TTA_MODES
from fer_bench.recipes.schema import Recipe, lr_factor, stage_lr
from fer_bench.utils import provenance
from fer_bench.utils.io import write_json

__all__ = ["SELECT_BY", "ResultRow", "model_cost", "plateau", "plateau_figure", "provenance_fields", "recipe_choice",
           "result_row", "time_to_accuracy", "timestamp", "write_row"]  # fmt: skip


class ResultRow(TypedDict, total=False):
    """The fields of ``result.json`` (a training row; an ``eval`` row has the same and the fields of its checkpoint).

    Figures are on a 0–100 scale; ``test`` maps each metric of
    :func:`fer_bench.evaluation.metrics.classification_metrics` to its value (the plain single-crop headline),
    ``test_tta`` each TTA mode to its top-1 / macro-F1 / weighted-F1.
    Rows written by earlier versions may lack later fields: readers use ``row.get``.
    """

    # identity: what ran, on what, under which protocol
    run_id: str
    model: str
    family: str
    source: str
    recipe: str
    recipe_version: int
    recipe_hash: str
    protocol_hash: str
    protocol: str
    dataset: str
    data_source: str
    data_fingerprint: str
    split: str
    classes: list[str]
    n_train: int
    n_val: int
    n_test: int
    seed: int | None  # None: an eval row of a bare weights file (no training run behind it)
    # settings as resolved
    epochs: int | None
    epochs_run: int
    best_epoch: int
    img_size: int
    batch_size: int
    precision: str
    precision_label: str
    channels_last: bool
    compile: str | None
    ema_decay: float | None
    ema_decay_used: float | None
    lr_scaling: dict[str, Any]
    lr_used: dict[str, float]
    weights: dict[str, Any]
    weights_source: str
    world_size: int
    distributed: dict[str, Any]
    # provenance
    device: str
    device_name: str
    git_sha: str
    versions: dict[str, str]
    tf32: dict[str, bool]
    timestamp: str
    # training figures
    history: list[dict[str, Any]]
    train_e2e_img_s: float
    train_frozen_epochs: int
    train_wall_s: float | None
    val_near_best_epoch: int | None
    val_near_best_min: float | None
    converged: bool | None
    plateau_gain_pt: float | None
    plateau_window: int
    plateau_val_macro_f1: float | None
    segments: int
    segment_train_s: list[float]
    wall_s: float
    # test figures and files
    test: dict[str, float]
    test_tta: dict[str, dict[str, float]]
    confusion_matrix: list[list[int]]
    predictions: dict[str, str]
    predictions_valid: dict[str, str]
    # cost
    params: int
    trainable_params: int
    gmacs: float
    infer_model_img_s: float
    infer_batch_size: int
    test_tta_gmacs: dict[str, float]
    # where the row came from besides a plain run
    suite: str  # a suite's name and cell id (fer-bench run --suite)
    cell: str
    blind: bool  # a blind suite's validation row: trained, never tested
    trained_run_id: str  # the run whose weights this row scored (another split, or eval of a run folder)
    eval: dict[str, Any]  # fer-bench eval: the checkpoint, its sha256, the run it came from, the data scored
    cross_dataset: dict[str, Any]  # eval on another dataset's classes: the class map and what it shares
    corruptions: dict[str, Any]  # the corruption suite: mCA, the table, its files


def segment_fields(history: list[dict[str, Any]], segments: list[int]) -> dict[str, Any]:
    """In how many segments (processes: a kill and a resume make two) the run trained, and each one's training time.

    ``segments`` holds the epochs each segment trained, in order; a segment's time adds up its epochs' walls.

    Example:
        >>> segment_fields([{"epoch_wall_s": 60.0}, {"epoch_wall_s": 61.0}, {"epoch_wall_s": 59.0}], [1, 2])
        {'segments': 2, 'segment_train_s': [60.0, 120.0]}
    """
    ends = np.cumsum([0, *segments])
    walls = [sum(h.get("epoch_wall_s", 0.0) for h in history[a:b]) for a, b in zip(ends[:-1], ends[1:], strict=True)]
    return {"segments": len(segments), "segment_train_s": [round(w, 1) for w in walls]}


def result_row(plan, data, history: list[dict[str, Any]]) -> ResultRow:
    """The row's identity and training figures, from the resolved run (:class:`fer_bench.experiment.plan.RunPlan`)
    and its history; the runner adds the test figures, cost and files."""
    recipe, ctx, spec = plan.recipe, plan.ctx, plan.spec
    best = max(history, key=lambda h: h[SELECT_BY])
    return {
        "model": plan.model, "family": spec.family, "source": spec.source,
        "recipe": recipe.name, "recipe_version": recipe.version, "recipe_hash": plan.recipe_hash,
        "dataset": data.name, "data_source": data.source, "split": recipe.eval.split,
        "protocol": plan.proto.name,
        "n_train": len(plan.proto.train), "n_val": len(plan.proto.val), "n_test": len(plan.proto.test),
        "seed": recipe.train.seed, "epochs": recipe.train.epochs, "epochs_run": len(history),
        "best_epoch": best["epoch"], "img_size": plan.size, "batch_size": recipe.train.batch_size,
        "precision": plan.precision, "channels_last": ctx.channels_last,
        "compile": recipe.train.compile, "ema_decay": recipe.train.ema_decay, **_lr_fields(recipe, plan.stages),
        **provenance_fields(ctx), "classes": list(data.classes),
        # the run's end-to-end training speed (augmentation, forward, backward, step; no validation), median
        # over epochs; epochs in a stage with frozen parameters are counted (a frozen backbone trains faster)
        "train_e2e_img_s": round(statistics.median(h["epoch_train_img_s"] for h in history), 1),
        "train_frozen_epochs": sum(1 for h in history if h["stage"] in _frozen_stages(plan.stages)),
        **time_to_accuracy(history), **plateau(history, recipe.train.epochs), **plateau_figure(history),
        "history": history, "timestamp": timestamp(),
    }  # fmt: skip


NEAR_BEST_PT = 0.5  # "near best": within this many points of the run's best (the convergence tolerance)


def time_to_accuracy(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Training wall time, and when the checkpoint's validation figure first came within 0.5 pt of its best.

    ``train_wall_s`` adds up the epochs' wall times (a resumed run's history holds every segment's epochs, so its
    clock never restarts); ``val_near_best_epoch`` is the first epoch whose :data:`SELECT_BY` is within
    :data:`NEAR_BEST_PT` of the run's best and ``val_near_best_min`` the training minutes up to its end.

    Example:
        >>> h = [{"epoch": e, "val_macro_f1": f, "epoch_wall_s": 60.0} for e, f in [(1, 30), (2, 39.6), (3, 40)]]
        >>> time_to_accuracy(h)
        {'train_wall_s': 180.0, 'val_near_best_epoch': 2, 'val_near_best_min': 2.0}
    """
    if not history or any("epoch_wall_s" not in h for h in history):  # a checkpoint from before epoch timing
        return {"train_wall_s": None, "val_near_best_epoch": None, "val_near_best_min": None}
    best = max(h[SELECT_BY] for h in history)
    near = next(i for i, h in enumerate(history) if h[SELECT_BY] >= best - NEAR_BEST_PT)
    return {
        "train_wall_s": round(sum(h["epoch_wall_s"] for h in history), 1),
        "val_near_best_epoch": history[near]["epoch"],
        "val_near_best_min": round(sum(h["epoch_wall_s"] for h in history[: near + 1]) / 60, 3),
    }


def plateau(history: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """Whether the run converged in the sense the results READMEs use: its schedule ran to the end and validation (the
    checkpoint figure) gained at most :data:`NEAR_BEST_PT` over the last max(5, 20 %) epochs.

    ``plateau_gain_pt`` is the best of the last window minus the best before it (negative: the window fell back);
    ``converged`` is None when the history is too short to have a window and something before it.

    Example:
        >>> h = [{"epoch": e, "val_macro_f1": min(e, 6) * 10.0} for e in range(1, 11)]
        >>> plateau(h, 10)
        {'converged': False, 'plateau_gain_pt': 10.0, 'plateau_window': 5}
        >>> plateau(h[:8], 10)["converged"], plateau(h + h[-2:], 12)["plateau_gain_pt"]
        (False, 0.0)
    """
    window = plateau_window(len(history))
    if len(history) <= window:
        return {"converged": None, "plateau_gain_pt": None, "plateau_window": window}
    gain = max(h[SELECT_BY] for h in history[-window:]) - max(h[SELECT_BY] for h in history[:-window])
    ran_out = len(history) >= epochs
    return {"converged": bool(ran_out and gain <= NEAR_BEST_PT), "plateau_gain_pt": round(gain, 3),
            "plateau_window": window}  # fmt: skip


def plateau_window(n_epochs: int) -> int:
    """The converged window of a run of ``n_epochs``: its last max(5, 20 %) epochs."""
    return max(5, math.ceil(0.2 * n_epochs))


def plateau_figure(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of :data:`SELECT_BY` over the converged window (None while the history is no longer than it).

    A run's peak is the maximum of a noisy curve over as many draws as it has epochs, so a longer run's peak is
    higher for nothing; the plateau mean compares what runs of different lengths settle at.

    Example:
        >>> plateau_figure([{"val_macro_f1": v} for v in (10, 20, 30, 40, 50, 62, 60, 60, 60, 60)])
        {'plateau_val_macro_f1': 60.4, 'plateau_window': 5}
    """
    window = plateau_window(len(history))
    if len(history) <= window:
        return {"plateau_val_macro_f1": None, "plateau_window": window}
    return {"plateau_val_macro_f1": round(statistics.fmean(h[SELECT_BY] for h in history[-window:]), 4),
            "plateau_window": window}  # fmt: skip


def recipe_choice(
    histories: dict[str, list[dict[str, Any]]], converged: dict[str, bool | None] | None = None
) -> dict[str, Any]:
    """Which of several runs (name → history) a choice between recipes picks, on which validation figure.

    Runs of one length compare their best :data:`SELECT_BY` (the peak, as the checkpoint rule does); runs of
    different lengths compare :func:`plateau_figure`, since a longer run's peak has more epochs to be high by chance.
    ``converged`` (name → the row's ``converged``): only runs that converged are eligible; None or unknown is not.
    Returns ``figure`` (the key compared), ``values`` (name → figure, every run), ``eligible`` (names) and
    ``chosen`` (the highest eligible).
    """
    lengths = {len(h) for h in histories.values()}
    if len(lengths) == 1:
        figure, values = "best_val_macro_f1", {n: max(e[SELECT_BY] for e in h) for n, h in histories.items()}
    else:
        figure = "plateau_val_macro_f1"
        values = {n: plateau_figure(h)[figure] for n, h in histories.items()}
    eligible = [n for n in histories if converged is None or converged.get(n) is True]
    scored = {n: values[n] for n in eligible if values[n] is not None}
    return {"figure": figure, "values": values, "eligible": eligible,
            "chosen": max(scored, key=scored.get) if scored else None}  # fmt: skip


def _lr_fields(recipe: Recipe, stages) -> dict[str, Any]:
    """The batch-size rule the LR followed and the LR each stage trained at (before warm-up and schedule)."""
    o = recipe.optim
    rule = {"rule": o.lr_scaling, "reference_batch_size": o.reference_batch_size, "factor": lr_factor(recipe)}
    return {"lr_scaling": rule, "lr_used": {s.name: stage_lr(recipe, s) for s, _ in stages}}


def _frozen_stages(stages) -> set[str]:
    """Names of the stages that do not train every parameter."""
    return {s.name for s, _ in stages if tuple(s.trainable) != ("all",)}


def save_predictions(run_dir: Path, data, idx: np.ndarray, probs, labels, name: str = predictions.FILE):
    """Write per-sample predictions of ``idx`` beside the row (fer_bench.evaluation.predictions); the row's reference to
    them."""
    path = run_dir / name
    return {"file": path.name, "sha256": predictions.write(path, probs, labels, sample_ids(data)[idx])}


def model_cost(model, spec, size: int, ctx, tta: Iterable[str] = ()) -> dict[str, Any]:
    """Parameters, GMACs and model-only inference throughput of ``model``; with ``tta`` (the row's TTA modes), the
    GMACs of each mode's forward passes (``test_tta_gmacs``)."""
    out = cost.count_params(model) | {
        "gmacs": round(cost.gmacs(model, spec.in_chans, size, ctx.device), 4),
        # model-only inference on random input at the run's precision and memory format (not `fer-bench bench`)
        "infer_model_img_s": round(cost.infer_throughput(model, spec.in_chans, size, ctx.device, batch_size=64,
                                                         channels_last=ctx.channels_last, amp_dtype=ctx.amp_dtype), 1),
        "infer_batch_size": 64,
    }  # fmt: skip
    if tta:
        out["test_tta_gmacs"] = {t: round(out["gmacs"] * TTA_MODES.get(t).passes, 4) for t in tta}
    return out


def provenance_fields(ctx) -> dict[str, Any]:
    """Where a row was computed: the device, its name, the code's commit, the library versions, TF32."""
    return {"device": ctx.device.type, "device_name": provenance.device_name(ctx.device),
            "git_sha": provenance.git_sha(), "versions": provenance.versions(),
            "tf32": provenance.tf32(ctx.device)}  # fmt: skip


def timestamp() -> str:
    """A row's local time of writing, with its UTC offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_row(row: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """``run_dir/result.json`` and the run's plots (learning curve, confusion matrix, reliability)."""
    from fer_bench.report.run_plots import save_run_plots

    write_json(run_dir / "result.json", row)
    save_run_plots(row, run_dir)
    return row
