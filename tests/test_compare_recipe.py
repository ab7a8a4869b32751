"""The comparison's common recipe: a warm-up as a share of the steps and a weight average whose horizon scales with
the run (with timm's warm-up); the values a run uses, not the config's, are checked."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fer_bench.engine.builders import build_ema
from fer_bench.recipes import list_recipes, load_recipe, recipe_hash
from fer_bench.recipes.schema import TrainCfg
from fer_bench.utils.errors import ConfigError
from helpers import _Killed, _killed_after, _run, _run_recording, _untimed, fer_bench


@pytest.fixture(scope="module")
def synthetic():
    from fer_bench.data import load_dataset

    return load_dataset("synthetic")


def test_compare_48_is_fast_48_with_lengths_relative_to_the_run():
    r, fast = load_recipe("compare-48"), load_recipe("fast-48")
    assert "compare-48" in list_recipes()
    assert (r.schedule.warmup_epochs, r.schedule.warmup_fraction, r.schedule.hold_fraction) == (0, 0.05, 0)
    assert (r.train.ema_decay, r.train.ema_horizon_fraction, r.train.ema_warmup) == (None, 0.1, True)
    same = ("augment", "loss", "optim", "input", "data", "eval")
    assert all(getattr(r, k) == getattr(fast, k) for k in same)  # only the lengths differ from fast-48 v4
    res = fer_bench("ls", "recipes")
    assert res.returncode == 0 and "compare-48" in res.stdout


def test_warmup_fraction_is_a_share_of_the_steps_then_cosine_to_the_last_step(tmp_path, synthetic):
    sets = ["train.epochs=4", "train.batch_size=16", "schedule.warmup_epochs=0", "schedule.warmup_fraction=0.3",
            "schedule.min_lr_ratio=0.1", "optim.lr=0.01"]  # fmt: skip
    row, used = _run_recording(tmp_path, synthetic, sets)
    n = len(used[0])
    steps = [lr for epoch in used for lr in epoch]
    total = 4 * n
    warm = int(0.3 * total)  # 30 % of every step of the run, not of an epoch

    def lr(step: int) -> float:  # the documented schedule, written out independently
        if step < warm:
            return 0.01 * (0.01 + 0.99 * step / warm)
        return 0.01 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm))))

    assert len(steps) == total and warm > n  # longer than one epoch: not an epoch count in disguise
    assert steps == pytest.approx([lr(s) for s in range(total)], rel=1e-12)


@pytest.mark.parametrize(
    "sets, where",
    [
        (["schedule.warmup_fraction=0.1"], "schedule.warmup_epochs"),  # baseline's warmup_epochs 0.25 is set too
        (["schedule.warmup_epochs=0", "schedule.warmup_fraction=0.6"], "schedule.warmup_fraction"),
        (["train.ema_decay=0.999", "train.ema_horizon_fraction=0.1"], "train.ema_decay"),
        (["train.ema_horizon_fraction=0"], "train.ema_horizon_fraction"),
        (["train.ema_warmup=true"], "train.ema_warmup"),
    ],
)
def test_exclusive_or_out_of_range_lengths_are_refused(sets, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_recipe(None, sets)


@pytest.mark.parametrize(
    "field", ["schedule.warmup_fraction=0.04", "train.ema_horizon_fraction=0.2", "train.ema_warmup=false"]
)
def test_the_new_lengths_are_in_the_recipe_and_protocol_hashes(field, synthetic):
    from fer_bench.experiment.plan import RunOptions, run_protocol

    base, other = load_recipe("compare-48"), load_recipe("compare-48", [field])
    assert recipe_hash(base) != recipe_hash(other)
    opts = RunOptions(out=None, device="cpu")
    assert run_protocol("simple_cnn", base, synthetic, opts)[0] != run_protocol("simple_cnn", other, synthetic, opts)[0]
    # unset, they leave every older recipe's hash as it was
    assert recipe_hash(load_recipe(None, [])) == recipe_hash(load_recipe(None, ["train.ema_warmup=false"]))


def _ema_trace(cfg: TrainCfg, total_steps: int, n_updates: int) -> tuple[list[float], list[float]]:
    """The average of a one-weight model fed 1, 2, 3, … and the same recursion with the documented decays."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = build_ema(model, cfg, total_steps)
    got, expect, avg = [], [], 0.0
    decay = 1 - 1 / (cfg.ema_horizon_fraction * total_steps) if cfg.ema_horizon_fraction else cfg.ema_decay
    for n in range(n_updates):
        with torch.no_grad():
            model.weight.fill_(float(n + 1))
        ema.update(model)
        d = min(decay, (1 + n) / (10 + n)) if cfg.ema_warmup else decay
        avg = d * avg + (1 - d) * (n + 1)
        got.append(float(ema.module.weight.detach()))
        expect.append(avg)
    return got, expect


@pytest.mark.parametrize("warmup", [False, True])
def test_the_decay_used_at_each_update_follows_the_horizon_and_the_warmup(warmup):
    cfg = TrainCfg(ema_horizon_fraction=0.1, ema_warmup=warmup)
    got, expect = _ema_trace(cfg, total_steps=400, n_updates=120)  # horizon 40 updates: decay 0.975
    assert got == pytest.approx(expect, rel=1e-5)
    # the warm-up's decay (1+n)/(10+n) stays below 0.975 until n = 351: with it the average lags the ramp 1, 2, …
    # by about n/9 (108 at n = 120), without it by its horizon and the zero it started from (83)
    assert (got[-1] > 100) == warmup
    slow, _ = _ema_trace(TrainCfg(ema_horizon_fraction=0.1), total_steps=4000, n_updates=120)
    assert slow[-1] < got[-1]  # a ten times longer run averages over ten times as many updates


def test_a_killed_run_with_the_ema_warmup_resumes_to_the_same_numbers(tmp_path, synthetic, monkeypatch):
    sets = ["train.epochs=3", "data.limit_train=140", "eval.batch_size=512", "eval.tta=[none]", "train.seed=1",
            "train.ema_horizon_fraction=0.5", "train.ema_warmup=true"]  # fmt: skip
    full = _run(tmp_path / "full", synthetic, sets)
    with monkeypatch.context() as m:
        _killed_after(m, 1)
        with pytest.raises(_Killed):
            _run(tmp_path / "killed", synthetic, sets)
    row = _run(tmp_path / "killed", synthetic, sets, resume=True)
    strip = lambda h: [{k: v for k, v in e.items() if k != "segment"} for e in _untimed(h)]  # noqa: E731
    assert strip(row["history"]) == strip(full["history"]) and row["test"] == full["test"]
    steps = 3 * math.ceil(140 / 64)  # data.limit_train=140 images, batch 64
    assert row["ema_decay_used"] == pytest.approx(1 - 1 / (0.5 * steps))
