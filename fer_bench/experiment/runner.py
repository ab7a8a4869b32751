"""The composition root: recipe + dataset + backbone → trained model → one result row.

:func:`run_model` resolves the run once (:mod:`fer_bench.experiment.plan`), trains it (:mod:`fer_bench.engine.trainer`),
scores the test split on the one prediction path :mod:`fer_bench.engine.predict` (``eval`` uses it too) and writes
the row (:mod:`fer_bench.experiment.row`) with its predictions and plots.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import yaml

from fer_bench.data import FerData
from fer_bench.engine import distributed, trainer
from fer_bench.engine.builders import check_targets, ema_decay
from fer_bench.engine.freeze import frozen_unloaded, frozen_unloaded_message
from fer_bench.engine.predict import predict_plain, predict_test, tta_said
from fer_bench.evaluation import predictions
from fer_bench.experiment.plan import (
    RunOptions,
    RunPlan,
    device_context,
    make_norms,
    make_protocol,
    resolve_plan,
    run_id,
)
from fer_bench.experiment.protocol import weights_label
from fer_bench.experiment.row import model_cost, result_row, save_predictions, segment_fields, timestamp, write_row
from fer_bench.models import create_model, weights_info
from fer_bench.recipes import recipe_hash, recipe_to_dict
from fer_bench.recipes.checks import frozen_without_weights
from fer_bench.recipes.schema import Recipe
from fer_bench.utils.errors import ConfigError
from fer_bench.utils.io import write_json


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
    plan: RunPlan | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` under ``recipe`` on ``data``, evaluate it, write and return its result row.

    ``on_epoch`` receives each epoch's history entry (the tracker logs it); files go to ``opts.out/<run_id>/``.
    ``plan``: the run already resolved by the caller (:func:`fer_bench.experiment.plan.resolve_plan` of the same
    model, recipe, data and options), so that its identity is computed once.
    """
    if reason := frozen_without_weights(recipe, has_weights=recipe.input.pretrained or opts.weights is not None):
        raise ConfigError(reason)  # before any loading: a frozen random backbone is no result
    check_targets(recipe.loss, data)  # label distributions need a loss that takes them, before anything is written
    plan = plan or resolve_plan(model_name, recipe, data, opts)
    ctx, world, run_dir = plan.ctx, opts.world, plan.run_dir
    seed_everything(recipe.train.seed)
    model, spec = create_model(model_name, num_classes=len(data.classes), pretrained=recipe.input.pretrained,
                               weights=opts.weights, drop_rate=recipe.model.drop_rate,
                               allow_partial=opts.allow_partial_weights)  # fmt: skip
    if unloaded := frozen_unloaded(model, plan.stages):  # a partial file passes the check above; frozen must be loaded
        raise ConfigError(frozen_unloaded_message(recipe, unloaded))
    model = distributed.sync_batchnorm(model, world, recipe.train.sync_bn, ctx.device.type)
    model = model.to(ctx.device, memory_format=torch.channels_last if ctx.channels_last else torch.preserve_format)
    distributed.check_batches(len(plan.proto.train), recipe.train.batch_size, world, f"recipe {recipe.name!r}")
    if world.main and not opts.resume and (run_dir / "result.json").is_file():  # the same protocol again: say so
        print(f"note: {run_dir} already holds a finished row of this protocol; training again replaces it "
              "(--resume continues from its last.pt instead)", file=sys.stderr)  # fmt: skip
    if world.main:  # under torchrun rank 0 alone writes
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
        write_json(run_dir / "protocol.json", plan.protocol_fields)

    start = time.perf_counter()
    history, model, digests, segments = trainer.fit(model, plan, data, world=world, resume=opts.resume,
                                                    progress=opts.progress, on_epoch=on_epoch)  # fmt: skip
    if not world.main:  # the other ranks trained in step; rank 0 tests, writes and tracks
        return {"run_id": plan.run_id, "world_size": world.size}
    row = result_row(plan, data, history)
    row |= segment_fields(history, segments)
    steps = recipe.train.epochs * math.ceil(len(plan.proto.train) / recipe.train.batch_size)  # what the run planned
    row["ema_decay_used"] = ema_decay(recipe.train, steps)  # before its warm-up, if any
    row["world_size"] = world.size
    if world.active:  # each rank's trained parameters (sha256): equal when the ranks stayed in step
        row["distributed"] = {"world_size": world.size, "backend": torch.distributed.get_backend(),
                              "sync_bn": recipe.train.sync_bn, "param_sha256": digests}  # fmt: skip
    row["weights"] = weights_info(model)
    pfields = plan.protocol_fields
    row |= {"protocol_hash": plan.protocol_hash, "data_fingerprint": pfields["data_fingerprint"],
            "weights_source": weights_label(pfields["weights"]), "precision_label": pfields["precision"]}  # fmt: skip
    if not opts.evaluate_test:
        return row | {"run_id": plan.run_id}
    proto, norms = plan.proto, plan.norms
    phase(f"testing on {recipe.eval.split}: {len(proto.test)} images, {tta_said(recipe)}")
    row["test"], row["test_tta"], row["confusion_matrix"], plain = predict_test(model, recipe, data, proto.test,
                                                                                norms, ctx)  # fmt: skip
    row["predictions"] = save_predictions(run_dir, data, proto.test, *plain)
    # the hold-out's predictions of the same weights: what temperature scaling is fitted on
    # (fer_bench.evaluation.calibration)
    phase(f"predicting the validation hold-out: {len(proto.val)} images")
    valid = predict_plain(model, recipe, data, proto.val, norms, ctx)
    row["predictions_valid"] = save_predictions(run_dir, data, proto.val, *valid, name=predictions.VALID_FILE)
    phase("measuring parameters, GMACs and inference throughput")
    row |= model_cost(model, spec, plan.size, ctx, tta=row["test_tta"])
    row["wall_s"] = round(time.perf_counter() - start, 1)
    row["run_id"] = plan.run_id
    phase(f"writing plots to {run_dir}")
    return write_row(row, run_dir)


def phase(what: str) -> None:
    """One line as a phase after training starts (each takes seconds on a CPU), so the console never goes quiet."""
    print(f"  {what} …", file=sys.stderr, flush=True)


def evaluate_on_split(
    model_name: str, recipe: Recipe, data: FerData, opts: RunOptions, trained: dict[str, Any]
) -> dict[str, Any]:
    """Evaluate the best weights of a finished run (its row: ``trained``) on ``recipe.eval.split``; no retraining.

    The row is the trained row with the test figures, split, test size, recipe hash and run id of this split;
    it names the run whose weights it used (``trained_run_id``) and is written to its own folder.
    """
    _, ctx = device_context(recipe, opts)
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
    phase(f"testing the same weights on {recipe.eval.split}: {len(proto.test)} images, {tta_said(recipe)}")
    row = dict(trained) | {"split": recipe.eval.split, "recipe_hash": recipe_hash(recipe), "n_test": len(proto.test),
                           "run_id": rid, "trained_run_id": trained["run_id"],
                           "timestamp": timestamp()}  # fmt: skip
    figures = predict_test(model, recipe, data, proto.test, norms, ctx)
    row["test"], row["test_tta"], row["confusion_matrix"], plain = figures
    row["predictions"] = save_predictions(run_dir, data, proto.test, *plain)
    if "predictions_valid" in trained:  # the same weights on the same hold-out: the trained run's file, copied
        shutil.copyfile(opts.out / trained["run_id"] / predictions.VALID_FILE, run_dir / predictions.VALID_FILE)
    return write_row(row, run_dir)
