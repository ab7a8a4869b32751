"""The composition root: recipe + dataset + backbone → trained model → one result row.

This is the only module that wires data, model, loss, optimizer, engine and outputs together.
"""

from __future__ import annotations

import fnmatch
import math
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from fer_bench.bench import cost
from fer_bench.data import FerData, stratified_split, stratified_subset
from fer_bench.data.augment import BatchAugment, Normalize
from fer_bench.engine import checkpoint, distributed
from fer_bench.engine import steps as engine
from fer_bench.engine.builders import (
    build_ema,
    build_loss,
    build_optimizer,
    build_scheduler,
    check_targets,
    compiled,
    ema_decay,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
)
from fer_bench.evaluation import predictions
from fer_bench.evaluation.metrics import classification_metrics, confusion_matrix
from fer_bench.experiment.protocol import (
    content_rank,
    data_fingerprint,
    precision_label,
    protocol_fields,
    protocol_hash,
    run_name,
    sample_ids,
    weights_identity,
    weights_label,
)
from fer_bench.models import classifier_params, create_model, weights_info
from fer_bench.models.weights import SHOWN_MISSING
from fer_bench.recipes import recipe_hash, recipe_to_dict
from fer_bench.recipes.checks import frozen_without_weights, scratch_variant
from fer_bench.recipes.parts import TTA_MODES
from fer_bench.recipes.schema import Recipe, lr_factor, stage_lr, stage_plan
from fer_bench.report.run_plots import save_run_plots
from fer_bench.utils import cpu_caps, provenance
from fer_bench.utils.errors import ConfigError
from fer_bench.utils.io import write_json


@dataclass(frozen=True)
class RunOptions:
    """Where and on what a run happens; what it trains is the recipe's business."""

    out: Path
    device: str = "auto"
    weights: str | None = None
    allow_partial_weights: bool = False  # a --weights file may leave backbone tensors random
    progress: bool = True
    resume: bool = False  # continue from <out>/<run>/last.pt when it exists
    protocol: dict | None = None  # a leakage-free protocol (fer_bench.data.audit): test images to drop
    evaluate_test: bool = True  # False while tuning: the test split is never looked at
    world: distributed.World = distributed.SINGLE  # under torchrun: this rank (fer_bench.engine.distributed)


@dataclass(frozen=True)
class Protocol:
    """The index sets one run uses, all fixed before training starts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    name: str = "standard"  # or the name of a leakage-free protocol file


def make_protocol(data: FerData, recipe: Recipe, drop: dict | None = None, scoring: bool = False) -> Protocol:
    """Training/validation/test indices: validation never overlaps test, test never feeds training.

    ``drop`` (a protocol from ``fer-bench data check --write-protocol``) removes held-out images by content hash.
    ``scoring`` (``eval`` of a test split): no training images are needed, and train (and a hold-out of it) is empty.
    """
    cfg = recipe.data
    # NOTE: every index set is put in content order (fer_bench.experiment.protocol.content_rank) before it is split,
    # subset or batched, so a CSV and a folder tree of the same faces give the same hold-out and batches (one protocol
    # hash).
    rank = content_rank(data)
    canon = lambda idx: idx[np.argsort(rank[idx], kind="stable")]  # noqa: E731
    train = np.empty(0, dtype=np.int64) if scoring else canon(data.split_indices("train"))
    if cfg.val_source == "train" and scoring:
        val = train
    elif cfg.val_source == "train":
        train, val = (canon(i) for i in stratified_split(data.labels, train, cfg.val_fraction, cfg.split_seed))
    else:
        val = canon(data.split_indices(cfg.val_source))
    test = canon(data.split_indices(recipe.eval.split))
    if np.intersect1d(val, test).size:
        raise ConfigError(
            f"recipe {recipe.name!r}: validation (data.val_source={cfg.val_source}) overlaps the test split "
            f"(eval.split={recipe.eval.split}). Pick another --split or data.val_source."
        )
    if cfg.limit_train is not None:
        train = canon(stratified_subset(data.labels, train, cfg.limit_train, cfg.split_seed))
    if drop is not None:
        from fer_bench.data.audit import content_hashes

        hashes = np.array(content_hashes(data.images))
        keep = lambda idx: idx[~np.isin(hashes[idx], list(drop["drop_test_hashes"]))]  # noqa: E731
        test, val = keep(test), (keep(val) if cfg.val_source != "train" else val)
    return Protocol(train, val, test, drop["name"] if drop else "standard")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_model(
    model_name: str,
    recipe: Recipe,
    data: FerData,
    opts: RunOptions,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` under ``recipe`` on ``data``, evaluate it, write and return its result row.

    ``on_epoch`` receives each epoch's history entry (the tracker logs it); files go to ``opts.out/<run_id>/``.
    """
    if reason := frozen_without_weights(recipe, has_weights=recipe.input.pretrained or opts.weights is not None):
        raise ConfigError(reason)  # before any loading: a frozen random backbone is no result
    check_targets(recipe.loss, data)  # label distributions need a loss that takes them, before anything is written
    precision, ctx = _context(recipe, opts)
    seed_everything(recipe.train.seed)
    model, spec = create_model(model_name, num_classes=len(data.classes), pretrained=recipe.input.pretrained,
                               weights=opts.weights, drop_rate=recipe.model.drop_rate,
                               allow_partial=opts.allow_partial_weights)  # fmt: skip
    if unloaded := frozen_unloaded(model, recipe):  # a partial file passes the check above; frozen must be loaded
        raise ConfigError(_frozen_unloaded_message(recipe, unloaded))
    world = opts.world
    model = distributed.sync_batchnorm(model, world, recipe.train.sync_bn, ctx.device.type)
    model = model.to(ctx.device, memory_format=torch.channels_last if ctx.channels_last else torch.preserve_format)
    size = recipe.input.img_size or spec.input_size
    norms = make_norms(recipe, spec, size)
    proto = make_protocol(data, recipe, opts.protocol)
    distributed.check_batches(len(proto.train), recipe.train.batch_size, world, f"recipe {recipe.name!r}")
    phash, pfields = run_protocol(model_name, recipe, data, opts, precision, ctx.device.type, size)
    rid = run_id(model_name, recipe, data, phash, proto.name)
    run_dir = opts.out / rid
    if world.main and not opts.resume and (run_dir / "result.json").is_file():  # the same protocol again: say so
        print(f"note: {run_dir} already holds a finished row of this protocol; training again replaces it "
              "(--resume continues from its last.pt instead)", file=sys.stderr)  # fmt: skip
    if world.main:  # under torchrun rank 0 alone writes
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
        write_json(run_dir / "protocol.json", pfields)

    start = time.perf_counter()
    history, model, digests, segments = _fit(model, recipe, data, proto, norms, ctx, opts, run_dir, model_name,
                                             on_epoch)  # fmt: skip
    if not world.main:  # the other ranks trained in step; rank 0 tests, writes and tracks
        return {"run_id": rid, "world_size": world.size}
    row = _result_row(model_name, spec, recipe, data, proto, history, precision, ctx, size)
    row |= segment_fields(history, segments)
    steps = recipe.train.epochs * math.ceil(len(proto.train) / recipe.train.batch_size)  # what the run planned
    row["ema_decay_used"] = ema_decay(recipe.train, steps)  # before its warm-up, if any
    row["world_size"] = world.size
    if world.active:  # each rank's trained parameters (sha256): equal when the ranks stayed in step
        row["distributed"] = {"world_size": world.size, "backend": torch.distributed.get_backend(),
                              "sync_bn": recipe.train.sync_bn, "param_sha256": digests}  # fmt: skip
    row["weights"], row["tf32"] = weights_info(model), provenance.tf32(ctx.device)
    row |= {"protocol_hash": phash, "data_fingerprint": pfields["data_fingerprint"],
            "weights_source": weights_label(pfields["weights"]), "precision_label": pfields["precision"]}  # fmt: skip
    if not opts.evaluate_test:
        return row | {"run_id": rid}
    phase(f"testing on {recipe.eval.split}: {len(proto.test)} images, {_tta_said(recipe)}")
    row["test"], row["test_tta"], row["confusion_matrix"], plain = _test(model, recipe, data, proto.test, norms, ctx)
    row["predictions"] = _save_predictions(run_dir, data, proto.test, *plain)
    # the hold-out's predictions of the same weights: what temperature scaling is fitted on
    # (fer_bench.evaluation.calibration)
    phase(f"predicting the validation hold-out: {len(proto.val)} images")
    valid = predict_plain(model, recipe, data, proto.val, norms, ctx)
    row["predictions_valid"] = _save_predictions(run_dir, data, proto.val, *valid, name=predictions.VALID_FILE)
    phase("measuring parameters, GMACs and inference throughput")
    row |= _cost(model, spec, size, ctx)
    row["test_tta_gmacs"] = {t: round(row["gmacs"] * TTA_MODES.get(t).passes, 4) for t in row["test_tta"]}
    row["wall_s"] = round(time.perf_counter() - start, 1)
    row["run_id"] = rid
    write_json(run_dir / "result.json", row)
    phase(f"writing plots to {run_dir}")
    save_run_plots(row, run_dir)
    return row


def phase(what: str) -> None:
    """One line as a phase after training starts (each takes seconds on a CPU), so the console never goes quiet."""
    print(f"  {what} …", file=sys.stderr, flush=True)


def _tta_said(recipe: Recipe) -> str:
    extra = [t for t in dict.fromkeys(recipe.eval.tta) if t != "none"]
    return f"plain and TTA {', '.join(extra)}" if extra else "plain"


def run_protocol(
    model_name: str,
    recipe: Recipe,
    data: FerData,
    opts: RunOptions,
    precision: str | None = None,
    device_type: str | None = None,
    size: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """The protocol hash and fields of a run (fer_bench.experiment.protocol), computable before it trains (suites use
    it).

    ``precision``, ``device_type`` and ``size`` are resolved here from the recipe and options when not given.
    """
    precision_, ctx = _context(recipe, opts)
    precision, device_type = precision or precision_, device_type or ctx.device.type
    if size is None:
        from fer_bench.models import get_spec

        size = recipe.input.img_size or get_spec(model_name).input_size
    label = precision_label(precision, device_type)
    resolved = recipe_to_dict(recipe)  # what ran, not how it was asked for ("auto", null): equal runs, equal hashes
    resolved["train"] |= {"precision": label, "channels_last": ctx.channels_last}
    resolved["input"] |= {"img_size": size}
    if opts.world.active and not recipe.train.sync_bn:  # batch norms over B/N images: not the one-process protocol
        resolved["train"]["bn_batch_ranks"] = opts.world.size
    _resolve_lrs(resolved, recipe)
    fields = protocol_fields(
        resolved, dataset=data.name, fingerprint=data_fingerprint(data), dedup=opts.protocol, img_size=size,
        weights=weights_identity(opts.weights, recipe.input.pretrained, model_name), precision=label,
    )  # fmt: skip
    return protocol_hash(fields), fields


def _resolve_lrs(resolved: dict[str, Any], recipe: Recipe) -> None:
    """Put the LRs that train (``optim.lr_scaling`` applied) in place of the scaling rule: two recipes that train at
    the same LR and batch size are one protocol, whether the LR was written out or scaled from another batch."""
    factor = lr_factor(recipe)
    resolved["optim"] |= {"lr": recipe.optim.lr * factor, "lr_scaling": "none", "reference_batch_size": None}
    for stage in resolved["stages"]:
        stage["lr"] = stage["lr"] * factor if stage["lr"] is not None else None


def _context(recipe: Recipe, opts: RunOptions) -> tuple[str, engine.StepContext]:
    device = resolve_device(opts.device)
    precision, amp_dtype = resolve_precision(recipe.train.precision, device)
    channels_last = resolve_channels_last(recipe.train.channels_last, device)
    return precision, engine.StepContext(device, amp_dtype, channels_last)


def evaluate_on_split(
    model_name: str, recipe: Recipe, data: FerData, opts: RunOptions, trained: dict[str, Any]
) -> dict[str, Any]:
    """Evaluate the best weights of a finished run (its row: ``trained``) on ``recipe.eval.split``; no retraining.

    The row is the trained row with the test figures, split, test size, recipe hash and run id of this split;
    it names the run whose weights it used (``trained_run_id``) and is written to its own folder.
    """
    _, ctx = _context(recipe, opts)
    model, spec = create_model(model_name, num_classes=len(data.classes), drop_rate=recipe.model.drop_rate)
    best = opts.out / trained["run_id"] / "best.pt"
    model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
    model = model.to(ctx.device, memory_format=torch.channels_last if ctx.channels_last else torch.preserve_format)
    norms = make_norms(recipe, spec, trained["img_size"])
    proto = make_protocol(data, recipe, opts.protocol)
    rid = run_id(model_name, recipe, data, trained["protocol_hash"], proto.name)
    run_dir = opts.out / rid
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
    phase(f"testing the same weights on {recipe.eval.split}: {len(proto.test)} images, {_tta_said(recipe)}")
    row = dict(trained) | {"split": recipe.eval.split, "recipe_hash": recipe_hash(recipe), "n_test": len(proto.test),
                           "run_id": rid, "trained_run_id": trained["run_id"],
                           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    row["test"], row["test_tta"], row["confusion_matrix"], plain = _test(model, recipe, data, proto.test, norms, ctx)
    row["predictions"] = _save_predictions(run_dir, data, proto.test, *plain)
    if "predictions_valid" in trained:  # the same weights on the same hold-out: the trained run's file, copied
        shutil.copyfile(opts.out / trained["run_id"] / predictions.VALID_FILE, run_dir / predictions.VALID_FILE)
    write_json(run_dir / "result.json", row)
    save_run_plots(row, run_dir)
    return row


def make_norms(recipe: Recipe, spec, size: int) -> dict[str, Normalize]:
    """The input pipelines: ``train`` (what augmentation ends in), ``eval`` (plain) and ``tencrop`` (TTA).

    A ten-crop recipe trains on crops of ``size`` taken from images enlarged by 48/40 (Khaireddin & Chen:
    40-px crops of 48-px faces), and its plain evaluation uses the centre crop at that same scale.
    """
    big = round(size * 48 / 40)
    crop_scale = recipe.augment.train_crops == "tencrop"
    grey = (spec.in_chans, spec.mean, spec.std)
    return {
        "train": Normalize(big, *grey, crop=size) if crop_scale else Normalize(size, *grey),
        "eval": Normalize(big, *grey, crop=size) if crop_scale else Normalize(size, *grey),
        "tencrop": Normalize(big, *grey),
    }


def run_id(model_name: str, recipe: Recipe, data: FerData, phash: str, protocol: str = "standard") -> str:
    """The run's folder name (:func:`fer_bench.experiment.protocol.run_name`): its model, recipe, data, split, seed and
    protocol hash ``phash``, so runs of other settings never share a folder."""
    return run_name(model_name, recipe.name, data.name, recipe.eval.split, recipe.train.seed, phash, dedup=protocol)


def run_folder(model_name: str, recipe: Recipe, data: FerData, opts: RunOptions) -> Path:
    """Where :func:`run_model` writes this run, known before it trains (a finished row is looked up here)."""
    phash, _ = run_protocol(model_name, recipe, data, opts)
    return opts.out / run_id(model_name, recipe, data, phash, opts.protocol["name"] if opts.protocol else "standard")


def _device_tensors(
    data: FerData, idx: np.ndarray, device: torch.device, distributions: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of ``idx`` on ``device``; ``distributions``: the training targets (FER+ vote distributions)."""
    images = torch.from_numpy(np.ascontiguousarray(data.images[idx])).to(device)
    return images, torch.from_numpy(data.train_targets(idx) if distributions else data.labels[idx]).to(device)


def set_trainable(model: torch.nn.Module, patterns: tuple[str, ...]) -> list[torch.nn.Module]:
    """Train only the parameters matching ``patterns`` ("all", "head" or name globs); return the frozen modules.

    Raises:
        ConfigError: a glob that matches no parameter (a typo would silently freeze the model).
    """
    keep = trainable_names(model, patterns)
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))
            and not any(p.requires_grad for p in m.parameters(recurse=False))]  # fmt: skip


def trainable_names(model: torch.nn.Module, patterns: tuple[str, ...]) -> set[str]:
    """Names of the parameters that ``patterns`` ("all", "head" or name globs) train; see :func:`set_trainable`."""
    names = [n for n, _ in model.named_parameters()]
    keep: set[str] = set()
    for pat in patterns:
        match = set(names) if pat == "all" else classifier_params(model) if pat == "head" else set(
            fnmatch.filter(names, pat))  # fmt: skip
        if not match:
            raise ConfigError(f"stage trainable pattern {pat!r} matches no parameter of the model "
                              f"(names look like {names[0]!r} … {names[-1]!r}).")  # fmt: skip
        keep |= match
    return keep


def frozen_unloaded(model: torch.nn.Module, recipe: Recipe) -> list[str]:
    """State-dict entries that a stage freezes although neither the starting weights nor an earlier stage set them.

    Frozen are a stage's untrained parameters and the buffers of its frozen modules (they stay in eval mode, so
    their batch-norm statistics never update; ``num_batches_tracked`` is read by no eval-mode figure). An entry a
    previous stage trained is no longer random. Loaded names come from the model's WeightsInfo (none: scratch).
    """
    info = getattr(model, "fer_bench_weights", None)
    settled = set(info.loaded_names if info else ())  # loaded, or trained by an earlier stage
    unloaded: dict[str, None] = {}  # ordered set: the message lists the first names in model order
    for stage, _ in stage_plan(recipe):
        keep = trainable_names(model, stage.trainable)
        frozen = [n for n, _ in model.named_parameters() if n not in keep]
        for mname, module in model.named_modules():
            own = [f"{mname}.{n}" if mname else n for n, _ in module.named_parameters(recurse=False)]
            if own and not any(n in keep for n in own):
                frozen += [f"{mname}.{b}" if mname else b for b, _ in module.named_buffers(recurse=False)
                           if b != "num_batches_tracked"]  # fmt: skip
        unloaded |= dict.fromkeys(n for n in frozen if n not in settled)
        settled |= set(model.state_dict()) - set(frozen)
    return list(unloaded)


def _frozen_unloaded_message(recipe: Recipe, unloaded: list[str]) -> str:
    variant = scratch_variant(recipe)
    alt = f", or use its from-scratch variant (--recipe {variant})" if variant else ""
    shown = ", ".join(unloaded[:SHOWN_MISSING]) + (" …" if len(unloaded) > SHOWN_MISSING else "")
    return (
        f"recipe {recipe.name!r} keeps {len(unloaded)} frozen tensors that the starting weights did not fill "
        f"(first: {shown}); frozen, they would stay random. Pass --weights FILE holding them (weights of this "
        f"architecture) or --pretrained{alt}. --allow-partial-weights does not cover frozen layers."
    )


@dataclass
class _BestTracker:
    """The best validation macro-F1 so far, its epoch, and the epochs since it last improved (early stopping).

    ``best.pt`` is written after ``last.pt``: a run killed between the two finds in ``last.pt`` that its last
    epoch was the best, and ``_restore`` writes ``best.pt`` again, so it always holds the history's best epoch.
    """

    path: Path
    best: float = -1.0
    epoch: int = 0  # the epoch of ``best``; 0 = none yet
    stale: int = 0
    writes: bool = True  # under torchrun rank 0 alone keeps best.pt

    def update(self, score: float, epoch: int) -> bool:
        """Record epoch ``epoch``'s score; True when it is the best so far."""
        if score > self.best:
            self.best, self.epoch, self.stale = score, epoch, 0
            return True
        self.stale += 1
        return False

    def save(self, model: torch.nn.Module) -> None:
        if not self.writes:
            return
        checkpoint.save(self.path, {k: v.detach().cpu() for k, v in model.state_dict().items()})


@dataclass(frozen=True)
class _Position:
    """Where training stands between two epochs: all a resume needs to pick the same next step as a live run."""

    epoch: int = 0  # epochs trained so far (the history's length)
    stage: int = 0  # index in stage_plan of the stage the next epoch belongs to
    stage_epoch: int = 0  # epochs of that stage already trained; 0 = the stage starts afresh
    stopped: bool = False  # early stopping ended the run (train.early_stop_scope: run)

    def after_epoch(self, stage_over: bool, run_over: bool) -> _Position:
        if run_over:
            return _Position(self.epoch + 1, self.stage, self.stage_epoch + 1, stopped=True)
        if stage_over:
            return _Position(self.epoch + 1, self.stage + 1, 0)
        return _Position(self.epoch + 1, self.stage, self.stage_epoch + 1)


@dataclass
class _Loop:
    """What one training run needs besides the model: data, loss, augmentation and outputs."""

    train: engine.Batches
    val: engine.Batches
    criterion: torch.nn.Module
    augment: BatchAugment
    gen: torch.Generator
    scaler: torch.amp.GradScaler | None
    ctx: engine.StepContext
    eval_norm: Normalize
    classes: tuple[str, ...]
    grad_clip: float | None
    progress: bool
    ema: torch.nn.Module | None = None  # the weight average (train.ema_decay): validated, selected, tested
    world: distributed.World = distributed.SINGLE
    share: distributed.BatchShare | None = None  # under torchrun: this rank's slice of every global batch

    def selected(self, model: torch.nn.Module) -> torch.nn.Module:
        """The weights that validation scores and best.pt keeps: the average's when there is one."""
        return self.ema.module if self.ema is not None else model


def _fit(model, recipe: Recipe, data, proto, norms, ctx, opts: RunOptions, run_dir: Path, name: str, on_epoch):
    """Train through the recipe's stages; a resumed run takes exactly the path the uninterrupted one takes.

    The only difference a resume makes is where it starts (``_restore``: weights, RNGs, history, best-so-far);
    a stage entered at its first epoch always gets a fresh optimizer and schedule, resumed or not.
    """
    t = recipe.train
    loop = _make_loop(recipe, data, proto, norms, ctx, opts)
    loop.ema = build_ema(model, t, t.epochs * len(loop.train))  # before a resume restores it
    net = compiled(model, t.compile)  # trains and validates; checkpoints take ``model``'s own state dict
    world = loop.world
    tracker = _BestTracker(run_dir / "best.pt", writes=world.main)
    pos, history, saved = _Position(), [], None
    if opts.resume and (saved := _load_last(run_dir, recipe, world)) is not None:
        pos, history = _restore(saved, loop, model, tracker), saved["history"]
        if loop.ema is not None:  # its warm-up goes on from the update it had reached
            loop.ema.updates = pos.epoch * len(loop.train)
        if world.main:
            print(f"  resuming after epoch {pos.epoch} from {run_dir / 'last.pt'}", file=sys.stderr)
    # epochs trained by each earlier process (segment) of this run; a checkpoint from before segments: one
    before = list(saved.get("segments") or [saved["epoch"]]) if saved is not None else []
    first = pos.epoch
    plan = stage_plan(recipe)
    while not pos.stopped and pos.stage < len(plan):
        si, (stage, n_epochs) = pos.stage, plan[pos.stage]
        frozen, optimizer, scheduler = _open_stage(model, recipe, stage, n_epochs, loop, pos, saved, tracker)
        train_net = distributed.wrap(net, world, ctx.device)  # per stage: DDP takes the parameters trainable now
        while pos.stage == si and not pos.stopped:
            entry = _one_epoch(train_net, loop, optimizer, scheduler, frozen, pos.epoch + 1, t.epochs)
            history.append({"epoch": pos.epoch + 1, "stage": stage.name, **entry})
            if world.main:
                _log_epoch(history[-1], t.epochs, opts.progress)
            if on_epoch is not None:
                on_epoch(history[-1])
            improved = tracker.update(entry[SELECT_BY], pos.epoch + 1)
            early = bool(t.early_stop_patience and tracker.stale >= t.early_stop_patience)
            pos = pos.after_epoch(early or pos.stage_epoch + 1 == n_epochs, early and t.early_stop_scope == "run")
            state = _state(recipe, pos, model, optimizer, scheduler, loop, history, tracker)
            state["segments"] = [*before, pos.epoch - first]
            if world.main:
                checkpoint.save(run_dir / "last.pt", state)
            if improved:
                tracker.save(loop.selected(model))
            if early and world.main:
                then = "the run ends" if pos.stopped else "the next stage starts"
                print(f"  early stop in stage {stage.name}: no better validation macro-F1 for {tracker.stale} "
                      f"epoch(s); {then}", file=sys.stderr)  # fmt: skip
    digests = distributed.gather(distributed.param_digest(model), world) if world.active else []
    if world.main:
        model.load_state_dict(torch.load(run_dir / "best.pt", map_location=ctx.device, weights_only=True))
    return history, model, digests, before + ([pos.epoch - first] if pos.epoch > first else [])


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


def _load_last(run_dir: Path, recipe: Recipe, world: distributed.World) -> dict | None:
    """``last.pt`` (checked as :func:`checkpoint.load` checks it), read by rank 0 and handed to every rank."""
    state, error = None, None
    if world.main:
        try:
            state = checkpoint.load(run_dir / "last.pt", recipe_hash(recipe), recipe.train.seed)
        except ConfigError as exc:
            error = str(exc)
    state, error = distributed.broadcast((state, error), world)
    if error is not None:
        raise ConfigError(error)
    if state is not None and len(state.get("rng_ranks") or [None]) != world.size:
        raise ConfigError(f"{run_dir / 'last.pt'}: the checkpoint was made by {len(state.get('rng_ranks') or [None])} "
                          f"process(es), this run has {world.size}; resume with the same torchrun "
                          f"--nproc_per_node, or use another --out.")  # fmt: skip
    if state is not None and world.active and "rng_dropout" not in state:
        raise ConfigError(f"{run_dir / 'last.pt'}: made before ranks drew their dropout masks for the global batch "
                          "(its generator is not in it); train afresh with another --out.")  # fmt: skip
    return state


def _make_loop(recipe: Recipe, data, proto, norms, ctx, opts: RunOptions) -> _Loop:
    t = recipe.train
    criterion = build_loss(recipe.loss, data.class_counts(proto.train), ctx.device)
    augment = BatchAugment(recipe.augment, norms["train"])
    share = None
    # NOTE: alike on every rank from here: masks for the global batch (fer_bench.engine.distributed)
    if opts.world.active:
        gen = distributed.shared_generator(ctx.device)
        share = distributed.BatchShare(augment, criterion, opts.world, dropout_gen=gen)
        torch.manual_seed(t.seed + 7919 * (opts.world.rank + 1))  # the default generator: per rank (rank 0 too, or
        # its dropout2d / DropBlock would reuse the numbers of the global masks), for the layers drawn per rank
    return _Loop(
        train=engine.Batches(*_device_tensors(data, proto.train, ctx.device, check_targets(recipe.loss, data)),
                             batch_size=t.batch_size, shuffle=True, seed=t.seed),
        val=engine.Batches(*_device_tensors(data, proto.val, ctx.device), batch_size=recipe.eval.batch_size),
        criterion=criterion, augment=share or augment,
        gen=torch.Generator(ctx.device).manual_seed(t.seed),
        scaler=torch.amp.GradScaler(ctx.device.type) if ctx.amp_dtype == torch.float16 else None,
        ctx=ctx, eval_norm=norms["eval"], classes=data.classes, grad_clip=t.grad_clip, progress=opts.progress,
        world=opts.world, share=share,
    )  # fmt: skip


def _open_stage(model, recipe: Recipe, stage, n_epochs: int, loop: _Loop, pos: _Position, saved, tracker):
    """Frozen modules, optimizer and LR schedule of ``stage``; fresh at its first epoch, else from ``saved``."""
    frozen = set_trainable(model, stage.trainable)
    optimizer = build_optimizer(replace(recipe.optim, lr=stage_lr(recipe, stage)), model)
    scheduler = build_scheduler(recipe.schedule, optimizer, len(loop.train), n_epochs)
    if pos.stage_epoch:  # resumed inside this stage: its optimizer and schedule carry on from last.pt
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    else:  # early stopping counts within a stage
        tracker.stale = 0
    return frozen, optimizer, scheduler


def _state(recipe: Recipe, pos: _Position, model, optimizer, scheduler, loop: _Loop, history, tracker) -> dict:
    """The ``last.pt`` content after an epoch. At a stage boundary the next stage builds its own optimizer and
    schedule (as an uninterrupted run does), so theirs are saved only inside a stage."""
    inside = pos.stage_epoch > 0 and not pos.stopped
    return {
        "format": checkpoint.FORMAT, "recipe_hash": recipe_hash(recipe), "seed": recipe.train.seed,
        "epoch": pos.epoch, "position": asdict(pos), "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if inside else None,
        "scheduler": scheduler.state_dict() if inside else None,
        "scaler": loop.scaler.state_dict() if loop.scaler else None,
        "ema": loop.ema.module.state_dict() if loop.ema is not None else None,
        "rng": checkpoint.rng_state(loop.gen), "history": history,
        # under torchrun every rank's RNGs (each its own) and the masks' shared one; a collective: every rank builds it
        **({"rng_ranks": distributed.gather(checkpoint.rng_state(loop.gen), loop.world),
            "rng_dropout": loop.share.dropout_gen.get_state()} if loop.share is not None else {}),
        "best": tracker.best, "best_epoch": tracker.epoch, "stale": tracker.stale,
    }  # fmt: skip


def _restore(state: dict, loop: _Loop, model, tracker: _BestTracker) -> _Position:
    """Put the run back where ``last.pt`` left it: weights, their average, scaler, RNGs and best-so-far; return the
    position."""
    model.load_state_dict(state["model"])
    if loop.ema is not None:  # the recipe hash covers ema_decay: a checkpoint of this recipe holds the average
        loop.ema.module.load_state_dict(state["ema"])
    if loop.scaler is not None and state["scaler"] is not None:
        loop.scaler.load_state_dict(state["scaler"])
    checkpoint.set_rng_state(state["rng_ranks"][loop.world.rank] if loop.world.active else state["rng"], loop.gen)
    if loop.share is not None:
        loop.share.dropout_gen.set_state(state["rng_dropout"])
    tracker.best, tracker.epoch, tracker.stale = state["best"], state["best_epoch"], state["stale"]
    if tracker.epoch == state["epoch"]:  # killed between last.pt and best.pt: best.pt may be a stale epoch
        tracker.save(loop.selected(model))
    return _Position(**state["position"])


def _one_epoch(model, loop: _Loop, optimizer, scheduler, frozen, epoch: int, total: int) -> dict:
    """Train epoch ``epoch`` (1-based, of ``total``), validate, feed the schedule validation top-1; the epoch's
    history entry.

    ``epoch_wall_s`` is the epoch's wall time, training and validation (checkpoint writes aside): a run's time to
    accuracy adds these up, so a resumed run counts the epochs of every segment (:func:`time_to_accuracy`).
    """
    start = time.perf_counter()
    # NOTE: no bar when stderr is not a terminal: in a log file every redraw is a line (megabytes per demo)
    bar = tqdm(total=len(loop.train.labels), desc=f"epoch {epoch}/{total}", unit="img", leave=False,
               disable=not (loop.progress and sys.stderr.isatty()), file=sys.stderr)  # fmt: skip
    report = lambda seen, loss: (bar.update(seen - bar.n), bar.set_postfix(loss=f"{loss:.3f}"))  # noqa: E731
    if loop.share is not None:
        loop.share.seen = 0
    stats = engine.train_one_epoch(
        model, loop.train.epoch(epoch - 1), criterion=loop.criterion, optimizer=optimizer, transform=loop.augment,
        gen=loop.gen, ctx=loop.ctx, scheduler=scheduler, scaler=loop.scaler, grad_clip=loop.grad_clip, frozen=frozen,
        ema=loop.ema, on_batch=None if bar.disable else report,  # no bar: the loss is read back once, at the end
        loss_scale=loop.share.loss_scale if loop.share is not None else None,
        step_context=loop.share.dropout if loop.share is not None else None,
    )  # fmt: skip
    bar.close()
    if loop.share is not None:  # the epoch's figures over every rank's samples
        stats = distributed.reduce_epoch(stats, loop.share.seen, loop.world)
    val = None
    if loop.world.main:  # the others take rank 0's figures: the same early stop and LR plateau on every rank
        inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
        val = engine.evaluate(loop.selected(inner), loop.val.epoch(), transform=loop.eval_norm, ctx=loop.ctx,
                              classes=loop.classes)  # fmt: skip
    val = distributed.broadcast(val, loop.world)
    scheduler.end_epoch(val["top1"])
    entry = stats | {f"val_{k}": val[k] for k in ("top1", "macro_f1", "loss")}
    # the processor class beside the wall time: a run resumed on another machine times its epochs on two classes
    return entry | {"epoch_wall_s": time.perf_counter() - start, "cpu_class": cpu_caps.probe().processor_class}


def _log_epoch(h: dict[str, float], total: int, progress: bool) -> None:
    line = (
        f"  epoch {h['epoch']}/{total} [{h['stage']}]  loss {h['train_loss']:.4f}  val top1 {h['val_top1']:.2f}  "
        f"val macro-F1 {h['val_macro_f1']:.2f}  lr {h['lr']:.2e}  {h['epoch_train_img_s']:.0f} img/s"
    )
    (tqdm.write if progress else print)(line, file=sys.stderr)


def _test(model, recipe: Recipe, data, idx: np.ndarray, norms: dict[str, Normalize], ctx):
    """The plain single-crop figures (the headline, always), and each TTA of ``eval.tta`` beside them.

    Returns (headline metrics, {tta: top1/macro_f1/weighted_f1}, confusion matrix of the headline, (headline
    probabilities, labels)). The headline is scored on the float32 probabilities its predictions file keeps, so
    the file gives back exactly the row's figures (an argmax over logits may break a float32 tie otherwise).
    """
    plain = predict_plain(model, recipe, data, idx, norms, ctx)  # the headline: "none" first, never a TTA
    results = {"none": classification_metrics(*plain, data.classes)}
    batches = engine.Batches(*_device_tensors(data, idx, ctx.device), batch_size=recipe.eval.batch_size)
    crop = norms["eval"].crop or norms["eval"].size
    for tta in dict.fromkeys(t for t in recipe.eval.tta if t != "none"):
        norm = norms[TTA_MODES.get(tta).pipeline]
        logits, y = engine.predict(model, batches.epoch(), transform=norm, ctx=ctx, tta=tta, crop=crop)
        results[tta] = classification_metrics(logits, y, data.classes)
    confusion = confusion_matrix(plain[1], plain[0].argmax(1), len(data.classes)).tolist()
    summary = {t: {k: m[k] for k in ("top1", "macro_f1", "weighted_f1")} for t, m in results.items()}
    return results["none"], summary, confusion, plain


def predict_plain(model, recipe: Recipe, data, idx: np.ndarray, norms: dict[str, Normalize], ctx):
    """(probabilities, labels) of the plain single-crop pass over ``idx``, as :func:`_test`'s headline computes them."""
    batches = engine.Batches(*_device_tensors(data, idx, ctx.device), batch_size=recipe.eval.batch_size)
    crop = norms["eval"].crop or norms["eval"].size
    logits, y = engine.predict(model, batches.epoch(), transform=norms["eval"], ctx=ctx, crop=crop)
    return predictions.softmax(logits), y


def _save_predictions(run_dir: Path, data: FerData, idx: np.ndarray, probs, labels, name: str = predictions.FILE):
    """Write per-sample predictions of ``idx`` beside the row (fer_bench.evaluation.predictions); the row's reference to
    them."""
    path = run_dir / name
    return {"file": path.name, "sha256": predictions.write(path, probs, labels, sample_ids(data)[idx])}


def _cost(model, spec, size: int, ctx) -> dict[str, Any]:
    return cost.count_params(model) | {
        "gmacs": round(cost.gmacs(model, spec.in_chans, size, ctx.device), 4),
        # model-only inference on random input at the run's precision and memory format (not `fer-bench bench`)
        "infer_model_img_s": round(cost.infer_throughput(model, spec.in_chans, size, ctx.device, batch_size=64,
                                                         channels_last=ctx.channels_last, amp_dtype=ctx.amp_dtype), 1),
        "infer_batch_size": 64,
    }  # fmt: skip


def _result_row(name, spec, recipe: Recipe, data: FerData, proto, history, precision, ctx, size) -> dict[str, Any]:
    best = max(history, key=lambda h: h[SELECT_BY])
    return {
        "model": name, "family": spec.family, "source": spec.source,
        "recipe": recipe.name, "recipe_version": recipe.version, "recipe_hash": recipe_hash(recipe),
        "dataset": data.name, "data_source": data.source, "split": recipe.eval.split,
        "protocol": proto.name,
        "n_train": len(proto.train), "n_val": len(proto.val), "n_test": len(proto.test),
        "seed": recipe.train.seed, "epochs": recipe.train.epochs, "epochs_run": len(history),
        "best_epoch": best["epoch"], "img_size": size, "batch_size": recipe.train.batch_size,
        "precision": precision, "channels_last": ctx.channels_last, "device": ctx.device.type,
        "compile": recipe.train.compile, "ema_decay": recipe.train.ema_decay, **_lr_fields(recipe),
        "device_name": provenance.device_name(ctx.device), "git_sha": provenance.git_sha(),
        "versions": provenance.versions(), "classes": list(data.classes),
        # the run's end-to-end training speed (augmentation, forward, backward, step; no validation), median
        # over epochs; epochs in a stage with frozen parameters are counted (a frozen backbone trains faster)
        "train_e2e_img_s": round(statistics.median(h["epoch_train_img_s"] for h in history), 1),
        "train_frozen_epochs": sum(1 for h in history if h["stage"] in _frozen_stages(recipe)),
        **time_to_accuracy(history), **plateau(history, recipe.train.epochs), **plateau_figure(history),
        "history": history, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip


# The validation figure that selects the checkpoint (best.pt), the row's best epoch and early stopping.
SELECT_BY = "val_macro_f1"
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


def _lr_fields(recipe: Recipe) -> dict[str, Any]:
    """The batch-size rule the LR followed and the LR each stage trained at (before warm-up and schedule)."""
    o = recipe.optim
    rule = {"rule": o.lr_scaling, "reference_batch_size": o.reference_batch_size, "factor": lr_factor(recipe)}
    return {"lr_scaling": rule, "lr_used": {s.name: stage_lr(recipe, s) for s, _ in stage_plan(recipe)}}


def _frozen_stages(recipe: Recipe) -> set[str]:
    """Names of the stages that do not train every parameter."""
    return {s.name for s, _ in stage_plan(recipe) if tuple(s.trainable) != ("all",)}
