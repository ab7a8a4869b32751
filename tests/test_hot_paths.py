"""pytest-benchmark timings of the hot paths. In the slow tier (tests/conftest.py), where pyproject's
``--benchmark-disable`` runs each once as a plain test; to time them:

    .venv/bin/python -m pytest tests/test_hot_paths.py -n 0 --benchmark-enable --benchmark-autosave
    .venv/bin/python -m pytest tests/test_hot_paths.py -n 0 --benchmark-enable --benchmark-compare   # vs last save
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_bench.data.augment import BatchAugment, Normalize
from fer_bench.evaluation.metrics import classification_metrics
from fer_bench.models import create_model
from fer_bench.recipes import load_recipe

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.mark.parametrize("batch", [64, 256])
def test_batch_augmentation(benchmark, batch):
    x = torch.randint(0, 256, (batch, 48, 48), dtype=torch.uint8)
    y = torch.zeros(batch, dtype=torch.long)
    augment = BatchAugment(load_recipe("baseline").augment, Normalize(48, 3, (0.5,) * 3, (0.25,) * 3))
    gen = torch.Generator().manual_seed(0)
    out, _ = benchmark(augment, x, y, gen)
    assert out.shape == (batch, 3, 48, 48)


def test_metrics_on_the_fer2013_test_split_size(benchmark):
    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(7178, 7)), rng.integers(0, 7, 7178)
    m = benchmark(classification_metrics, logits, y, CLASSES)
    assert 0 <= m["macro_f1"] <= 100


def test_training_step_simple_cnn(benchmark):
    torch.manual_seed(0)
    model, _ = create_model("simple_cnn")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(64, 1, 48, 48), torch.randint(0, 7, (64,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    assert benchmark(step) > 0
