"""Scoring a checkpoint without training: `fer-bench eval`, on any dataset and split, clean or corrupted.

A checkpoint is a run folder's ``best.pt`` (``--run DIR``: its model, resolved recipe and input size come from the
folder) or a state-dict file (``--weights FILE --model NAME``). It is scored on training's own prediction path
(:func:`fer_bench.engine.predict.predict_test`: the plain headline, each TTA, the confusion matrix, the predictions
file), so on the run's split, device and evaluation batch size it gives back the run's figures exactly. Every check
(files, the model's tensors, the classes) runs in :func:`prepare`, before anything is written or tracked.

The row is marked as an eval row: ``eval`` holds the checkpoint's path and sha256, the run it came from, the dataset,
its fingerprint and the split scored (``valid`` = the run's own Training hold-out, rebuilt from its recipe's
``data.val_fraction`` and ``data.split_seed``); MLflow gets it as a child tagged ``fer_bench.kind = eval``, so it
never enters a leaderboard beside the run it reproduces.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from fer_bench.engine import steps as engine
from fer_bench.engine.predict import predict_plain, predict_test, tta_logits
from fer_bench.evaluation import cross_dataset, predictions
from fer_bench.evaluation.metrics import headline
from fer_bench.experiment.corruption_scoring import CorruptionPlan, corruption_eval
from fer_bench.experiment.plan import RunOptions, device_context, make_norms, make_protocol
from fer_bench.experiment.protocol import data_fingerprint, precision_label, protocol_hash, run_name
from fer_bench.experiment.row import model_cost, provenance_fields, save_predictions, timestamp, write_row
from fer_bench.models import create_model
from fer_bench.models.weights import SHOWN_MISSING, WeightsInfo, check_weights_file, head_keys, read_state_dict
from fer_bench.recipes import load_recipe, recipe_hash, recipe_to_dict
from fer_bench.recipes.schema import Recipe
from fer_bench.utils.errors import ConfigError
from fer_bench.utils.io import file_sha256, write_json

VALID = "valid"  # the split name of a run's own validation hold-out
EVAL_SPLITS = ("public", "private", "test", VALID)


@dataclass(frozen=True)
class Checkpoint:
    """What is scored: a model name, its recipe and input size, the weights file and, for a run folder, its row."""

    model: str
    recipe: Recipe
    path: Path
    img_size: int | None = None  # None: the recipe's, else the model's native size
    run: dict[str, Any] | None = None
    run_dir: Path | None = None
    classes: tuple[str, ...] | None = None  # the head's classes in training order; None: the scored dataset's
    trained_on: str | None = None  # a weights file's `--trained-on` dataset (a run folder's row names its own)


def from_run(run_dir: Path, sets: list[str] | None = None) -> Checkpoint:
    """The checkpoint of a finished run folder (``result.json``, ``recipe.yaml``, ``best.pt``).

    Raises:
        ConfigError: the folder is missing, holds no finished row or no ``best.pt``.
    """
    if not (run_dir / "result.json").is_file():
        raise ConfigError(f"--run {run_dir}: no result.json there, so not the folder of a finished run. Give a folder "
                          "that `fer-bench run` wrote (OUT/<model>-<recipe>-<dataset>-<split>-s<seed>-<hash>/)."
                          )  # fmt: skip
    if not (run_dir / "best.pt").is_file():
        raise ConfigError(f"--run {run_dir}: no best.pt (the checkpoint a run keeps). Copy it back into the folder, "
                          "or score another weights file with --weights FILE --model NAME.")  # fmt: skip
    try:
        row = json.loads((run_dir / "result.json").read_text())
    except (ValueError, OSError) as exc:
        raise ConfigError(f"--run {run_dir}: result.json cannot be read ({exc.__class__.__name__}); rerun the run, or "
                          "score best.pt with --weights FILE --model NAME.") from None  # fmt: skip
    lacking = [k for k in ("model", "img_size", "dataset") if not isinstance(row, dict) or k not in row]
    if lacking:
        raise ConfigError(f"--run {run_dir}: result.json is not a run's row (no {', '.join(lacking)}); score best.pt "
                          "with --weights FILE --model NAME.")  # fmt: skip
    recipe = load_recipe(str(run_dir / "recipe.yaml"), sets) if (run_dir / "recipe.yaml").is_file() else None
    if recipe is None:
        raise ConfigError(f"--run {run_dir}: no recipe.yaml (the run's resolved recipe), so its input pipeline is "
                          "unknown. Score best.pt with --weights FILE --model NAME --recipe R.")  # fmt: skip
    classes = tuple(row["classes"]) if row.get("classes") else None
    return Checkpoint(row["model"], recipe, run_dir / "best.pt", row["img_size"], row, run_dir, classes)


def from_weights(
    path: Path,
    model: str,
    recipe: str | None,
    sets: list[str] | None,
    img_size: int | None,
    trained_on: str | None = None,
):
    """A state-dict file of ``model``, scored with ``recipe``'s evaluation settings (default: the model's recipe);
    ``trained_on`` names the dataset whose classes its head predicts (default: the scored dataset's)."""
    from fer_bench.data.spec import DATASETS, split_name
    from fer_bench.models import get_spec
    from fer_bench.recipes import default_recipe

    classes = None
    if trained_on is not None:
        classes = DATASETS.get(split_name(trained_on)[0]).classes
        if classes is None:
            raise ConfigError(f"--trained-on {trained_on}: its classes come from the data, so they do not name a "
                              "head. Name a dataset with fixed classes (`fer-bench ls datasets`).")  # fmt: skip

    if not path.is_file():
        raise ConfigError(f"--weights {path}: no such file. Pass a .pth/.pt/.safetensors state dict, or a run "
                          "folder with --run DIR.")  # fmt: skip
    spec = get_spec(model)
    resolved = load_recipe(recipe or default_recipe(spec), sets)  # --set and --recipe first: reading them is cheap
    check_weights_file(path)  # a file that is no checkpoint fails before the data loads
    return Checkpoint(
        spec.name, resolved, path, img_size, classes=tuple(classes) if classes else None, trained_on=trained_on
    )


@dataclass
class Prepared:
    """A checkpoint loaded and checked against the data: all :func:`evaluate` needs, nothing written yet."""

    ck: Checkpoint
    data: Any  # FerData
    split: str
    idx: np.ndarray
    model: torch.nn.Module
    spec: Any  # ModelSpec
    size: int
    sha256: str
    precision: str
    ctx: engine.StepContext
    cross: cross_dataset.ClassMap | None = None  # set when the head's classes are not the dataset's

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.data.classes)

    @cached_property
    def fingerprint(self) -> str:
        """The data's content hash (:func:`fer_bench.experiment.protocol.data_fingerprint`), computed once."""
        return data_fingerprint(self.data)

    @cached_property
    def eval_id(self) -> str:
        """The evaluation's folder name (:func:`fer_bench.experiment.protocol.run_name` with kind ``eval``), computed
        once; its key covers the checkpoint's bytes, the data's content, the samples scored, the input size and the
        precision."""
        ident = {"checkpoint_sha256": self.sha256, "data_fingerprint": self.fingerprint,
                 "img_size": self.size,
                 "samples": hashlib.sha256(np.ascontiguousarray(self.idx, dtype=np.int64).tobytes()).hexdigest(),
                 "precision": precision_label(self.precision, self.ctx.device.type)}  # fmt: skip
        seed = self.ck.run.get("seed") if self.ck.run else None
        return run_name(self.ck.model, self.ck.recipe.name, self.data.name, self.split, seed, protocol_hash(ident),
                        kind="eval")  # fmt: skip


def prepare(ck: Checkpoint, data, split: str, opts: RunOptions) -> Prepared:
    """Load ``ck`` strictly (every tensor, the head included) for ``data`` and pick the samples of ``split``.

    A head trained on other classes than ``data``'s is scored cross-dataset (:mod:`fer_bench.evaluation.cross_dataset`:
    classes matched by name).

    Raises:
        ConfigError: the checkpoint is for another model or another number of classes, shares no class with
            ``data``, or the split cannot be built.
    """
    classes = ck.classes or tuple(data.classes)
    cross = None
    if tuple(classes) != tuple(data.classes):
        where = f"--run {ck.run_dir}" if ck.run_dir else f"{ck.path}"
        cross = cross_dataset.class_map(classes, data.classes, where)
    state = read_state_dict(ck.path)
    model, spec = create_model(ck.model, num_classes=len(classes), drop_rate=ck.recipe.model.drop_rate)
    _check_state(model, state, ck, data, len(classes))
    model.load_state_dict(state)
    sha = file_sha256(ck.path)
    model.fer_bench_weights = WeightsInfo("file", str(ck.path.resolve()), sha, len(state), len(state))
    precision, ctx = device_context(ck.recipe, opts)
    model = model.to(ctx.device, memory_format=torch.channels_last if ctx.channels_last else torch.preserve_format)
    size = ck.img_size or ck.recipe.input.img_size or spec.input_size
    idx = split_indices(data, ck.recipe, split, opts.protocol)
    return Prepared(ck, data, split, idx, model, spec, size, sha, precision, ctx, cross)


def split_indices(data, recipe: Recipe, split: str, drop: dict | None = None) -> np.ndarray:
    """The samples of ``split`` in the runner's order; ``valid`` is the hold-out the recipe's run validated on."""
    if split == VALID:
        return make_protocol(data, recipe, drop).val
    if split not in EVAL_SPLITS:
        raise ConfigError(f"--split {split!r}: expected one of {', '.join(EVAL_SPLITS)}.")
    # scoring needs no training images: a copy of a dataset's test split alone (RAF-DB's test_*) can be scored
    return make_protocol(data, replace(recipe, eval=replace(recipe.eval, split=split)), drop, scoring=True).test


def _check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], ck: Checkpoint, data, n_head: int) -> None:
    own = model.state_dict()
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape] + [k for k in state if k not in own]
    if not bad:
        return
    head = head_keys(model)
    if set(bad) <= head:  # only the classifier differs: a head for another class count
        n = next(state[k].shape[0] for k in sorted(head) if k in state and state[k].ndim >= 1)
        if ck.classes is not None:  # the classes were named (a run's row, --trained-on): they disagree with the head
            raise ConfigError(f"{ck.path}: a checkpoint with a {n}-class head, but it was said to predict the "
                              f"{n_head} classes {list(ck.classes)}. Name the dataset it was trained on with "
                              "--trained-on DATASET.")  # fmt: skip
        raise ConfigError(f"{ck.path}: a checkpoint with a {n}-class head; {data.name} has {len(data.classes)} "
                          f"classes ({', '.join(data.classes)}). Score it on a dataset with {n} classes, or name "
                          "the dataset it was trained on with --trained-on DATASET.")  # fmt: skip
    shown = ", ".join(bad[:SHOWN_MISSING]) + (" …" if len(bad) > SHOWN_MISSING else "")
    raise ConfigError(f"{ck.path}: not a checkpoint of {ck.model!r}: {len(bad)} tensor(s) missing, extra or of "
                      f"another shape (first: {shown}). Pass the --model it was trained as (a run's result.json names "
                      "it), or use --run DIR.")  # fmt: skip


def evaluate(p: Prepared, opts: RunOptions, plan: CorruptionPlan | None = None) -> dict[str, Any]:
    """Score a prepared checkpoint; write the row, predictions, plots (and the corruption table) to ``opts.out``."""
    recipe, data = p.ck.recipe, p.data
    norms = make_norms(recipe, p.spec, p.size)
    run_dir = opts.out / p.eval_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
    row = _base_row(p, run_dir)
    if p.cross is None:
        row["test"], row["test_tta"], row["confusion_matrix"], plain = predict_test(p.model, recipe, data, p.idx, norms,
                                                                             p.ctx)  # fmt: skip
        row["predictions"] = save_predictions(run_dir, data, p.idx, *plain)
        if p.split == VALID and p.ck.run_dir is not None:
            _give_run_its_valid_predictions(p, plain)
    else:
        row |= _cross_test(p, norms, run_dir)
    row |= model_cost(p.model, p.spec, p.size, p.ctx, tta=row["test_tta"])
    if plan is not None:
        row["corruptions"] = corruption_eval(p, norms["eval"], plan, run_dir, clean_top1=row["test"]["top1"])
    return write_row(row, run_dir)


def _cross_test(p: Prepared, norms, run_dir: Path) -> dict[str, Any]:
    """The row's figures when the head's classes are not the dataset's: plain single crop (the headline) and each
    TTA beside it, scored by :func:`fer_bench.evaluation.cross_dataset.metrics`; the predictions file in its label
    space."""
    recipe, data, cmap = p.ck.recipe, p.data, p.cross
    probs, y = predict_plain(p.model, recipe, data, p.idx, norms, p.ctx)
    tta = {"none": cross_dataset.metrics(probs, y, cmap)}
    for t, logits, yt in tta_logits(p.model, recipe, data, p.idx, norms, p.ctx):
        tta[t] = cross_dataset.metrics(predictions.softmax(logits), yt, cmap)
    keys = (*(m.name for m in headline()), "top1_shared", "top1_restricted", "macro_f1_restricted")
    return {
        "test": tta["none"], "test_tta": {t: {k: m[k] for k in keys} for t, m in tta.items()},
        "confusion_matrix": cross_dataset.confusion(probs, y, cmap), "classes": list(cmap.scoring_classes),
        "predictions": save_predictions(run_dir, data, p.idx, *cross_dataset.extend(probs, y, cmap)),
        "cross_dataset": cmap.describe() | {"trained_on": p.ck.run.get("dataset") if p.ck.run else p.ck.trained_on,
                                            "scored_on": data.name, "n_lacking": tta["none"]["n_lacking"]},
    }  # fmt: skip


def _base_row(p: Prepared, run_dir: Path) -> dict[str, Any]:
    """The run's row (for a run folder) or the checkpoint's own description, with this evaluation's fields."""
    recipe, data, ctx = p.ck.recipe, p.data, p.ctx
    fingerprint = p.fingerprint
    label = precision_label(p.precision, ctx.device.type)
    mark = {"checkpoint": str(p.ck.path.resolve()), "checkpoint_sha256": p.sha256,
            "from_run": p.ck.run.get("run_id") if p.ck.run else None, "dataset": data.name,
            "data_source": data.source, "data_fingerprint": fingerprint, "split": p.split,
            "batch_size": recipe.eval.batch_size}  # fmt: skip
    if p.ck.run is not None:  # the trained row: how the weights came about (history, training time, protocol)
        row = {k: v for k, v in p.ck.run.items() if k not in ("predictions", "predictions_valid", "corruptions")}
        row["trained_run_id"] = p.ck.run.get("run_id")
    else:  # a bare weights file: its own identity stands in for a training protocol
        fields = {"kind": "eval", "checkpoint_sha256": p.sha256, "model": p.ck.model, "dataset": data.name,
                  "data_fingerprint": fingerprint, "img_size": p.size, "precision": label}  # fmt: skip
        write_json(run_dir / "protocol.json", fields)
        row = {"model": p.ck.model, "family": p.spec.family, "source": p.spec.source, "recipe": recipe.name,
               "recipe_version": recipe.version, "recipe_hash": recipe_hash(recipe), "protocol": "standard",
               "protocol_hash": protocol_hash(fields), "weights_source": f"file:{p.sha256[:12]}", "history": [],
               "seed": None, "epochs": None, "train_wall_s": None, "classes": list(data.classes)}  # fmt: skip
    return row | {
        "dataset": data.name, "data_source": data.source, "split": p.split, "n_test": len(p.idx),
        "img_size": p.size, "precision": p.precision, "precision_label": label, "channels_last": ctx.channels_last,
        **provenance_fields(ctx), "eval": mark,
        "weights": p.ck.run["weights"] if p.ck.run else p.model.fer_bench_weights.as_row(),
        "run_id": run_dir.name, "timestamp": timestamp(),
    }  # fmt: skip


def _give_run_its_valid_predictions(p: Prepared, plain) -> None:
    """An older run (before runs wrote it) gets ``predictions-valid.npz`` and its reference in its row; a run that
    has one keeps it untouched."""
    row = p.ck.run
    if "predictions_valid" in row or (p.ck.run_dir / predictions.VALID_FILE).exists():
        return
    ref = save_predictions(p.ck.run_dir, p.data, p.idx, *plain, name=predictions.VALID_FILE)
    write_json(p.ck.run_dir / "result.json", row | {"predictions_valid": ref})


# ---------------------------------------------------------------------------------------------------------------
# The corruption suite on a checkpoint


def add_corruptions(row: dict[str, Any], best: Path, recipe: Recipe, data, opts: RunOptions, plan: CorruptionPlan):
    """The corruption suite on the weights behind ``row`` (``best``: a suite cell's best.pt) on the row's split;
    the files go beside the row (``opts.out/<run_id>``) and the summary into it (``result.json`` rewritten)."""
    p = prepare(Checkpoint(row["model"], recipe, best, row["img_size"], run=row), data, row["split"], opts)
    run_dir = opts.out / row["run_id"]
    norm = make_norms(recipe, p.spec, p.size)["eval"]
    row["corruptions"] = corruption_eval(p, norm, plan, run_dir, clean_top1=row["test"]["top1"])
    write_json(run_dir / "result.json", row)
