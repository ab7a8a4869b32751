"""The one prediction path of training and `eval`: the plain single-crop headline and each TTA beside it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from fer_bench.data import FerData
from fer_bench.data.augment import Normalize
from fer_bench.engine import steps as engine
from fer_bench.evaluation import predictions
from fer_bench.evaluation.metrics import classification_metrics, confusion_matrix, headline
from fer_bench.recipes.parts import TTA_MODES
from fer_bench.recipes.schema import Recipe


def device_tensors(
    data: FerData, idx: np.ndarray, device: torch.device, distributions: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of ``idx`` on ``device``; ``distributions``: the training targets (FER+ vote distributions)."""
    images = torch.from_numpy(np.ascontiguousarray(data.images[idx])).to(device)
    return images, torch.from_numpy(data.train_targets(idx) if distributions else data.labels[idx]).to(device)


def predict_test(model, recipe: Recipe, data, idx: np.ndarray, norms: dict[str, Normalize], ctx):
    """The plain single-crop figures (the headline, always), and each TTA of ``eval.tta`` beside them.

    Returns (headline metrics, {tta: every registered headline metric}, confusion matrix of the headline, (headline
    probabilities, labels)). The headline is scored on the float32 probabilities its predictions file keeps, so
    the file gives back exactly the row's figures (an argmax over logits may break a float32 tie otherwise).
    """
    plain = predict_plain(model, recipe, data, idx, norms, ctx)  # the headline: "none" first, never a TTA
    results = {"none": classification_metrics(*plain, data.classes)}
    for tta, logits, y in tta_logits(model, recipe, data, idx, norms, ctx):
        results[tta] = classification_metrics(logits, y, data.classes)
    confusion = confusion_matrix(plain[1], plain[0].argmax(1), len(data.classes)).tolist()
    names = [m.name for m in headline()]  # the metric registry's: a registered metric reaches the row and MLflow
    summary = {t: {k: m[k] for k in names} for t, m in results.items()}
    return results["none"], summary, confusion, plain


def tta_logits(model, recipe: Recipe, data, idx: np.ndarray, norms: dict[str, Normalize], ctx) -> Iterator:
    """(mode, logits, labels) of each test-time augmentation that ``eval.tta`` asks for beside the plain headline."""
    batches = engine.Batches(*device_tensors(data, idx, ctx.device), batch_size=recipe.eval.batch_size)
    crop = norms["eval"].crop or norms["eval"].size
    for tta in dict.fromkeys(t for t in recipe.eval.tta if t != "none"):
        norm = norms[TTA_MODES.get(tta).pipeline]
        logits, y = engine.predict(model, batches.epoch(), transform=norm, ctx=ctx, tta=tta, crop=crop)
        yield tta, logits, y


def predict_plain(model, recipe: Recipe, data, idx: np.ndarray, norms: dict[str, Normalize], ctx):
    """(probabilities, labels) of the plain single-crop pass over ``idx``, as :func:`predict_test`'s headline computes
    them."""
    batches = engine.Batches(*device_tensors(data, idx, ctx.device), batch_size=recipe.eval.batch_size)
    crop = norms["eval"].crop or norms["eval"].size
    logits, y = engine.predict(model, batches.epoch(), transform=norms["eval"], ctx=ctx, crop=crop)
    return predictions.softmax(logits), y


def tta_said(recipe: Recipe) -> str:
    extra = [t for t in dict.fromkeys(recipe.eval.tta) if t != "none"]
    return f"plain and TTA {', '.join(extra)}" if extra else "plain"
