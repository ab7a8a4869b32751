"""A run resolved once, before it trains: device, precision, input size, norms, index sets, protocol hash, run id.

:func:`resolve_plan` makes the :class:`RunPlan` that the trainer, the test pass and the row read, so no figure of a
run's identity is computed twice. :func:`run_protocol` is the protocol hash alone (a suite compares cells by it
before anything trains).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench.data import FerData, stratified_split, stratified_subset
from fer_bench.data.augment import Normalize
from fer_bench.engine import distributed
from fer_bench.engine import steps as engine
from fer_bench.engine.builders import resolve_channels_last, resolve_device, resolve_precision
from fer_bench.experiment.protocol import (
    content_rank,
    data_fingerprint,
    precision_label,
    protocol_fields,
    protocol_hash,
    run_name,
    weights_identity,
)
from fer_bench.models import ModelSpec, get_spec
from fer_bench.recipes import recipe_hash, recipe_to_dict
from fer_bench.recipes.schema import Recipe, lr_factor, stage_plan
from fer_bench.utils.errors import ConfigError


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


def run_protocol(
    model_name: str,
    recipe: Recipe,
    data: FerData,
    opts: RunOptions,
    precision: str | None = None,
    ctx: engine.StepContext | None = None,
    size: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """The protocol hash and fields of a run (fer_bench.experiment.protocol), computable before it trains (suites use
    it).

    ``precision``, ``ctx`` and ``size`` are resolved here from the recipe and options when not given.
    """
    if precision is None or ctx is None:
        precision, ctx = device_context(recipe, opts)
    if size is None:
        size = recipe.input.img_size or get_spec(model_name).input_size
    label = precision_label(precision, ctx.device.type)
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


def device_context(recipe: Recipe, opts: RunOptions) -> tuple[str, engine.StepContext]:
    """The resolved precision and the step context (device, autocast dtype, memory format) of a run."""
    device = resolve_device(opts.device)
    precision, amp_dtype = resolve_precision(recipe.train.precision, device)
    channels_last = resolve_channels_last(recipe.train.channels_last, device)
    return precision, engine.StepContext(device, amp_dtype, channels_last)


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


@dataclass(frozen=True)
class RunPlan:
    """One run, resolved once: what it trains and where, and every figure of its identity."""

    model: str
    recipe: Recipe
    spec: ModelSpec
    precision: str  # resolved: fp32, amp_bf16 or amp_fp16
    ctx: engine.StepContext  # device, autocast dtype, memory format
    size: int  # input side in pixels
    norms: dict[str, Normalize]  # train, eval and tencrop input pipelines
    proto: Protocol  # train, validation and test indices
    recipe_hash: str
    stages: tuple  # (stage, epochs) of the recipe's schedule
    protocol_hash: str
    protocol_fields: dict[str, Any]
    run_id: str
    run_dir: Path


def resolve_plan(model_name: str, recipe: Recipe, data: FerData, opts: RunOptions) -> RunPlan:
    """Resolve everything a run's identity depends on, once (the trainer, the test pass and the row read it)."""
    spec = get_spec(model_name)
    precision, ctx = device_context(recipe, opts)
    size = recipe.input.img_size or spec.input_size
    proto = make_protocol(data, recipe, opts.protocol)
    phash, fields = run_protocol(model_name, recipe, data, opts, precision, ctx, size)
    rid = run_id(model_name, recipe, data, phash, proto.name)
    return RunPlan(model_name, recipe, spec, precision, ctx, size, make_norms(recipe, spec, size), proto,
                   recipe_hash(recipe), tuple(stage_plan(recipe)), phash, fields, rid, opts.out / rid)  # fmt: skip
