"""The learning-rate schedule has one writer: plateau cuts compound, warm-up runs at each stage's start, and the
LR in the history is the LR the optimizer used (read inside ``optimizer.step``, not from the schedule)."""

from __future__ import annotations

import math

import pytest
import torch

from fer_bench.data import load_dataset
from fer_bench.engine import steps as engine
from fer_bench.recipes import load_recipe
from helpers import _run_recording


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


@pytest.fixture
def stalled_validation(monkeypatch):
    """Validation top-1 and macro-F1 that never improve after the first epoch (the real figures otherwise)."""
    real = engine.evaluate

    def evaluate(*args, **kwargs):
        return real(*args, **kwargs) | {"top1": 40.0, "macro_f1": 20.0}

    monkeypatch.setattr(engine, "evaluate", evaluate)


def test_plateau_cuts_compound_in_a_real_run(tmp_path, synthetic, stalled_validation):
    sets = ["schedule.name=plateau", "schedule.warmup_epochs=0", "schedule.plateau_patience=0",
            "schedule.plateau_factor=0.5", "train.epochs=4", "optim.lr=0.004"]  # fmt: skip
    row, used = _run_recording(tmp_path, synthetic, sets)
    # epoch 1 sets the best top-1; epochs 2, 3, … stall and, at patience 0, each cuts the LR of the next epoch
    expected = [0.004, 0.004, 0.002, 0.001]  # factor^k after k cuts
    assert [h["lr"] for h in row["history"]] == pytest.approx(expected, rel=1e-12)
    for epoch, lrs in enumerate(used):
        assert lrs and all(lr == pytest.approx(expected[epoch], rel=1e-12) for lr in lrs), (epoch, lrs)


def test_warmup_at_each_stage_start_then_cosine_and_the_logged_lr_is_the_used_lr(tmp_path, synthetic):
    stages = "stages=[{name: a, epochs: 1, lr: 0.01}, {name: b, lr: 0.002}]"
    sets = [stages, "train.epochs=3", "train.batch_size=16", "schedule.warmup_epochs=0.5", "schedule.min_lr_ratio=0.1"]
    row, used = _run_recording(tmp_path, synthetic, sets)
    n = len(used[0])  # steps per epoch (140 images in batches of 16)
    assert n == 9 and [len(lrs) for lrs in used] == [n, n, n]

    def lr(base: float, step: int, epochs: int) -> float:  # the documented schedule, written out independently
        total, warm = epochs * n, min(int(0.5 * n), epochs * n // 2)
        if step < warm:
            return base * (0.01 + 0.99 * step / warm)
        t = (step - warm) / (total - warm)
        return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    stage_a = [lr(0.01, s, 1) for s in range(n)]
    stage_b = [lr(0.002, s, 2) for s in range(2 * n)]
    assert used[0] == pytest.approx(stage_a, rel=1e-12)
    assert used[1] + used[2] == pytest.approx(stage_b, rel=1e-12)
    assert used[1][0] == pytest.approx(0.01 * 0.002)  # the second stage warms up again from 1 % of its LR
    # the history's lr is the LR of each epoch's last optimizer step, not the next (unused) one
    assert [h["lr"] for h in row["history"]] == [lrs[-1] for lrs in used]


def test_hold_fraction_ends_the_cosine_early_and_keeps_the_floor(tmp_path, synthetic):
    sets = ["train.epochs=4", "train.batch_size=16", "schedule.warmup_epochs=0.5", "schedule.min_lr_ratio=0.1",
            "schedule.hold_fraction=0.375", "optim.lr=0.01"]  # fmt: skip
    row, used = _run_recording(tmp_path, synthetic, sets)
    n = len(used[0])
    steps = [lr for epoch in used for lr in epoch]
    assert len(steps) == 4 * n
    warm, end = int(0.5 * n), 4 * n - int(0.375 * 4 * n)  # the cosine spans [warm, end), written out independently

    def lr(step: int) -> float:
        if step < warm:
            return 0.01 * (0.01 + 0.99 * step / warm)
        t = min((step - warm) / (end - warm), 1.0)
        return 0.01 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    assert steps == pytest.approx([lr(s) for s in range(4 * n)], rel=1e-12)
    assert steps[end:] == pytest.approx([0.001] * (4 * n - end), rel=1e-12)  # the tail holds the floor
    assert steps[end - 2] > 0.001  # and the cosine had not reached it before


def test_hold_fraction_is_hashed_only_when_set_and_bounded():
    from fer_bench.recipes import recipe_hash
    from fer_bench.utils.errors import ConfigError

    assert recipe_hash(load_recipe(None, [])) == recipe_hash(load_recipe(None, ["schedule.hold_fraction=0"]))
    assert recipe_hash(load_recipe(None, [])) != recipe_hash(load_recipe(None, ["schedule.hold_fraction=0.2"]))
    with pytest.raises(ConfigError, match="schedule.hold_fraction"):
        load_recipe(None, ["schedule.hold_fraction=1"])


def test_schedule_state_survives_a_checkpoint_round_trip(tmp_path):
    from fer_bench.engine.builders import build_scheduler

    cfg = load_recipe(None, ["schedule.name=plateau", "schedule.plateau_patience=1", "schedule.warmup_epochs=1"])

    def make():
        opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
        return opt, build_scheduler(cfg.schedule, opt, steps_per_epoch=4, epochs=10)

    opt, sched = make()
    for val_top1 in (30.0, 30.0, 30.0, 30.0, 30.0):  # a best, then two cuts at patience 1: 0.25 of the LR
        for _ in range(4):
            opt.step()
            sched.step()
        sched.end_epoch(val_top1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "s.pt")
    saved = torch.load(tmp_path / "s.pt", weights_only=True)  # plain data only, as checkpoint.load requires

    opt2, sched2 = make()
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    for _ in range(3):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
            s.end_epoch(31.0)
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_khaireddin_recipe_gets_its_published_plateau_schedule():
    from fer_bench.engine.builders import build_scheduler

    r = load_recipe("khaireddin-vgg")
    assert (r.schedule.name, r.schedule.plateau_factor, r.schedule.plateau_patience) == ("plateau", 0.75, 5)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=r.optim.lr)
    sched = build_scheduler(r.schedule, opt, steps_per_epoch=3, epochs=r.train.epochs)
    lrs = []
    for val_top1 in [50.0] + [50.0] * 12:  # one best epoch, then twelve stalled ones
        for _ in range(3):
            opt.step()
            sched.step()
        sched.end_epoch(val_top1)
        lrs.append(opt.param_groups[0]["lr"])
    # ReduceLROnPlateau(factor=0.75, patience=5): a cut after the 6th stalled epoch, another after the 12th
    assert lrs == pytest.approx([0.01] * 6 + [0.0075] * 6 + [0.005625])
