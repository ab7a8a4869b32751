"""The composition root: recipe + dataset + backbone → trained model → one result row.

This is the only module that wires data, model, loss, optimizer, engine and outputs together.
"""

from __future__ import annotations

import copy
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from fer_bench import cost, engine, provenance
from fer_bench.data import FerData, stratified_split, stratified_subset
from fer_bench.data.augment import BatchAugment, Normalize
from fer_bench.errors import ConfigError
from fer_bench.metrics import classification_metrics, confusion_matrix
from fer_bench.models import create_model
from fer_bench.recipes import recipe_hash, recipe_to_dict
from fer_bench.recipes.schema import Recipe
from fer_bench.training import (
    build_loss,
    build_optimizer,
    build_scheduler,
    resolve_device,
    resolve_precision,
)


@dataclass(frozen=True)
class RunOptions:
    """Where and on what a run happens; what it trains is the recipe's business."""

    out: Path
    device: str = "auto"
    weights: str | None = None
    progress: bool = True


@dataclass(frozen=True)
class Protocol:
    """The index sets one run uses, all fixed before training starts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def make_protocol(data: FerData, recipe: Recipe) -> Protocol:
    """Training/validation/test indices: validation never overlaps test, test never feeds training."""
    cfg = recipe.data
    train = data.split_indices("train")
    if cfg.val_source == "train":
        train, val = stratified_split(data.labels, train, cfg.val_fraction, cfg.split_seed)
    else:
        val = data.split_indices(cfg.val_source)
    test = data.split_indices(recipe.eval.split)
    if np.intersect1d(val, test).size:
        raise ConfigError(
            f"recipe {recipe.name!r}: validation (data.val_source={cfg.val_source}) overlaps the test split "
            f"(eval.split={recipe.eval.split}). Pick another --split or data.val_source."
        )
    if cfg.limit_train is not None:
        train = stratified_subset(data.labels, train, cfg.limit_train, cfg.split_seed)
    return Protocol(train, val, test)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_model(model_name: str, recipe: Recipe, data: FerData, opts: RunOptions) -> dict[str, Any]:
    """Train ``model_name`` under ``recipe`` on ``data``, evaluate it, write and return its result row."""
    device = resolve_device(opts.device)
    precision, amp_dtype = resolve_precision(recipe.train.precision, device)
    channels_last = recipe.train.channels_last if recipe.train.channels_last is not None else device.type == "cuda"
    ctx = engine.StepContext(device, amp_dtype, channels_last)
    seed_everything(recipe.train.seed)
    model, spec = create_model(model_name, num_classes=len(data.classes), pretrained=recipe.input.pretrained,
                               weights=opts.weights)  # fmt: skip
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    size = recipe.input.img_size or spec.input_size
    norm = Normalize(size, spec.in_chans, spec.mean, spec.std)
    proto = make_protocol(data, recipe)
    run_dir = opts.out / run_id(model_name, recipe, data)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))

    start = time.perf_counter()
    history, model = _fit(model, recipe, data, proto, norm, ctx, opts, run_dir, model_name)
    row = _result_row(model_name, spec, recipe, data, proto, history, precision, ctx, size)
    row["test"], row["test_tta"], row["confusion_matrix"] = _test(model, recipe, data, proto, size, spec, ctx)
    row |= _cost(model, spec, size, ctx)
    row["wall_s"] = round(time.perf_counter() - start, 1)
    write_json(run_dir / "result.json", row)
    return row


def run_id(model_name: str, recipe: Recipe, data: FerData) -> str:
    safe = model_name.replace(":", "_").replace("/", "_")
    return f"{safe}-{recipe.name}-{data.name}-{recipe.eval.split}-s{recipe.train.seed}"


def _device_tensors(data: FerData, idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.ascontiguousarray(data.images[idx])).to(device)
    return images, torch.from_numpy(data.labels[idx]).to(device)


def _fit(model, recipe: Recipe, data, proto, norm, ctx, opts: RunOptions, run_dir: Path, name: str):
    t = recipe.train
    train_batches = engine.Batches(*_device_tensors(data, proto.train, ctx.device), batch_size=t.batch_size,
                                   shuffle=True, seed=t.seed)  # fmt: skip
    val_batches = engine.Batches(*_device_tensors(data, proto.val, ctx.device), batch_size=recipe.eval.batch_size)
    criterion = build_loss(recipe.loss, data.class_counts(proto.train), ctx.device)
    optimizer = build_optimizer(recipe.optim, model)
    scheduler = build_scheduler(recipe.schedule, optimizer, len(train_batches), t.epochs)
    scaler = torch.amp.GradScaler(ctx.device.type) if ctx.amp_dtype == torch.float16 else None
    augment = BatchAugment(recipe.augment, norm)
    gen = torch.Generator(ctx.device).manual_seed(t.seed)
    history: list[dict[str, float]] = []
    best_f1, best_state, stale = -1.0, None, 0
    epochs = tqdm(range(t.epochs), desc=name, unit="epoch", disable=not opts.progress, file=sys.stderr)
    for epoch in epochs:
        bar = tqdm(total=len(train_batches.labels), desc=f"epoch {epoch + 1}/{t.epochs}", unit="img", leave=False,
                   disable=not opts.progress, file=sys.stderr)  # fmt: skip
        stats = engine.train_one_epoch(
            model, train_batches.epoch(epoch), criterion=criterion, optimizer=optimizer, transform=augment, gen=gen,
            ctx=ctx, scheduler=scheduler, scaler=scaler, grad_clip=t.grad_clip,
            on_batch=lambda seen, loss, bar=bar: (bar.update(seen - bar.n), bar.set_postfix(loss=f"{loss:.3f}")),
        )  # fmt: skip
        bar.close()
        val = engine.evaluate(model, val_batches.epoch(), transform=norm, ctx=ctx, classes=data.classes)
        history.append({"epoch": epoch + 1, **stats, **{f"val_{k}": val[k] for k in ("top1", "macro_f1", "loss")}})
        epochs.set_postfix(val_top1=f"{val['top1']:.1f}", val_f1=f"{val['macro_f1']:.1f}")
        _log_epoch(history[-1], t.epochs, opts.progress)
        if val["macro_f1"] > best_f1:
            best_f1, stale = val["macro_f1"], 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            torch.save(best_state, run_dir / "best.pt")
        else:
            stale += 1
            if t.early_stop_patience and stale >= t.early_stop_patience:
                print(f"  early stop: no better validation macro-F1 for {stale} epoch(s)", file=sys.stderr)
                break
    model.load_state_dict(best_state)
    return history, model


def _log_epoch(h: dict[str, float], total: int, progress: bool) -> None:
    line = (
        f"  epoch {h['epoch']}/{total}  loss {h['train_loss']:.4f}  val top1 {h['val_top1']:.2f}  "
        f"val macro-F1 {h['val_macro_f1']:.2f}  lr {h['lr']:.2e}  {h['train_img_s']:.0f} img/s"
    )
    (tqdm.write if progress else print)(line, file=sys.stderr)


def _test(model, recipe: Recipe, data, proto, size: int, spec, ctx):
    batches = engine.Batches(*_device_tensors(data, proto.test, ctx.device), batch_size=recipe.eval.batch_size)
    results: dict[str, dict[str, float]] = {}
    confusion = None
    for tta in recipe.eval.tta:
        # Ten-crop keeps the model's input size: the image is enlarged by 48/40 first, then cropped.
        big = round(size * 48 / 40) if tta == "tencrop" else size
        norm = Normalize(big, spec.in_chans, spec.mean, spec.std)
        logits, y = engine.predict(model, batches.epoch(), transform=norm, ctx=ctx, tta=tta, crop=size)
        results[tta] = classification_metrics(logits, y, data.classes)
        if confusion is None:
            confusion = confusion_matrix(y, logits.argmax(1), len(data.classes)).tolist()
    headline = recipe.eval.tta[0]
    summary = {t: {k: m[k] for k in ("top1", "macro_f1", "weighted_f1")} for t, m in results.items()}
    return results[headline], summary, confusion


def _cost(model, spec, size: int, ctx) -> dict[str, Any]:
    return cost.count_params(model) | {
        "gmacs": round(cost.gmacs(model, spec.in_chans, size, ctx.device), 4),
        "infer_img_s": round(cost.infer_throughput(model, spec.in_chans, size, ctx.device,
                                                   channels_last=ctx.channels_last, amp_dtype=ctx.amp_dtype), 1),
    }  # fmt: skip


def _result_row(name, spec, recipe: Recipe, data: FerData, proto, history, precision, ctx, size) -> dict[str, Any]:
    best = max(history, key=lambda h: h["val_macro_f1"])
    return {
        "model": name, "family": spec.family, "source": spec.source,
        "recipe": recipe.name, "recipe_version": recipe.version, "recipe_hash": recipe_hash(recipe),
        "dataset": data.name, "data_source": data.source, "split": recipe.eval.split,
        "n_train": len(proto.train), "n_val": len(proto.val), "n_test": len(proto.test),
        "seed": recipe.train.seed, "epochs": recipe.train.epochs, "epochs_run": len(history),
        "best_epoch": best["epoch"], "img_size": size, "batch_size": recipe.train.batch_size,
        "precision": precision, "channels_last": ctx.channels_last, "device": ctx.device.type,
        "device_name": provenance.device_name(ctx.device), "git_sha": provenance.git_sha(),
        "versions": provenance.versions(), "classes": list(data.classes),
        "train_img_s": round(statistics.median(h["train_img_s"] for h in history), 1),
        "history": history, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip


def write_json(path: Path, obj: Any) -> None:
    """Write atomically: a crash never leaves half a result file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)
