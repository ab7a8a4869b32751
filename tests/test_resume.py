"""Crash and resume: a run killed after any epoch (a stage's last included), resumed, ends with the same numbers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from fer_bench.data import load_dataset
from fer_bench.engine import steps as engine
from fer_bench.experiment.plan import RunOptions, run_folder
from fer_bench.experiment.row import time_to_accuracy
from fer_bench.recipes import load_recipe
from fer_bench.utils.errors import ConfigError
from helpers import TWO_STAGES, _Killed, _killed_after, _run, _untimed

# 280 images: a kill lands mid-run all the same (the poll below takes 0.2 s, an epoch far longer), in half the time
ARGS = ["run", "--models", "simple_cnn", "--epochs", "3", "--limit-train", "280", "--seed", "1", "--no-progress",
        "--no-track", "--set", "eval.tta=[none]", "--set", "eval.batch_size=512"]  # fmt: skip


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_bench", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def _row(out) -> dict:
    return json.loads(next(out.rglob("result.json")).read_text())


@pytest.fixture(scope="module")
def full_cli(tmp_path_factory):
    """The uninterrupted CLI run: the reference of the killed one and the checkpoint another recipe must not take."""
    out = tmp_path_factory.mktemp("full-cli")
    full = _cli(*ARGS, "--out", str(out))
    assert full.returncode == 0, full.stderr
    return out


def test_killed_run_resumes_to_the_same_metrics(tmp_path, full_cli):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "fer_bench", *ARGS, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    last = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        last = next(out.rglob("last.pt"), None) if out.exists() else None
        if last is not None:
            break
    assert last is not None and proc.poll() is None, "the run ended before its first checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(out.rglob("result.json")), "a killed run must not leave a result row"
    assert torch.load(last, weights_only=True)["epoch"] < 3

    resumed = _cli(*ARGS, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stderr
    a, b = _row(full_cli), _row(out)
    assert [h["val_macro_f1"] for h in a["history"]] == [h["val_macro_f1"] for h in b["history"]]
    assert a["test"] == b["test"] and a["confusion_matrix"] == b["confusion_matrix"]


def test_resume_with_another_recipe_starts_a_run_of_its_own(tmp_path, full_cli):
    shutil.copytree(full_cli, tmp_path, dirs_exist_ok=True)  # a copy: the finished run's last.pt, left as it was
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "leaderboard.md"}
    other = _cli(*ARGS, "--out", str(tmp_path), "--resume", "--lr", "0.01")
    assert other.returncode == 0, other.stderr
    assert "resuming" not in other.stderr  # another protocol's folder: the first run's last.pt is not taken
    assert {p: p.read_bytes() for p in before} == before  # the first run's files are left as they were
    rows = [json.loads(p.read_text()) for p in tmp_path.glob("*/result.json")]
    assert len(rows) == 2 and sum(0.01 in r["lr_used"].values() for r in rows) == 1


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


def _best_weights(out) -> dict:
    return torch.load(next(out.rglob("best.pt")), weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synthetic):
    """The two-stage run that the resumed ones must match, its best weights and its output folder."""
    out = tmp_path_factory.mktemp("full")
    return _run(out, synthetic, TWO_STAGES), _best_weights(out), out


@pytest.mark.parametrize(
    "kill_after", [1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)]
)  # 1 = the last epoch of the first stage
def test_a_kill_after_any_epoch_resumes_to_the_same_numbers(tmp_path, synthetic, uninterrupted, monkeypatch,
                                                             kill_after):  # fmt: skip
    full, full_best, _ = uninterrupted
    with monkeypatch.context() as m:
        _killed_after(m, kill_after)
        with pytest.raises(_Killed):
            _run(tmp_path, synthetic, TWO_STAGES)
    row = _run(tmp_path, synthetic, TWO_STAGES, resume=True)
    assert [h["stage"] for h in row["history"]] == ["warm", "main", "main"]
    assert _untimed(row["history"]) == _untimed(full["history"])  # bit for bit, timing aside
    assert row["test"] == full["test"] and row["confusion_matrix"] == full["confusion_matrix"]
    best = _best_weights(tmp_path)
    assert all(torch.equal(best[k], full_best[k]) for k in full_best)
    # the clock does not restart: the epochs trained before the kill (all 3 when kill_after=3) count too
    assert row["train_wall_s"] == pytest.approx(sum(h["epoch_wall_s"] for h in row["history"]), abs=0.051)
    assert row["train_wall_s"] > 0 and all(h["epoch_wall_s"] > 0 for h in row["history"])


def test_time_to_accuracy_is_when_the_checkpoint_figure_first_came_within_half_a_point_of_its_best():
    history = [{"epoch": e, "val_macro_f1": f, "val_top1": t, "epoch_wall_s": s}
               for e, f, t, s in [(1, 20.0, 60.0, 30.0), (2, 39.4, 61.0, 60.0), (3, 39.6, 70.0, 90.0),
                                  (4, 40.0, 65.0, 30.0), (5, 38.0, 71.0, 30.0)]]  # fmt: skip
    got = time_to_accuracy(history)
    # macro-F1 (what selects best.pt), not top-1: best 40.0, first within 0.5 pt at epoch 3 (39.4 is 0.6 short)
    assert got == {"train_wall_s": 240.0, "val_near_best_epoch": 3, "val_near_best_min": 3.0}


@pytest.fixture
def stalled_validation(monkeypatch):
    """Validation macro-F1 that never improves after the first epoch (the real figures otherwise)."""
    real = engine.evaluate
    monkeypatch.setattr(engine, "evaluate", lambda *a, **k: real(*a, **k) | {"macro_f1": 20.0})


EARLY = ["stages=[{name: warm, epochs: 3, lr: 0.01}, {name: main, lr: 0.002}]", "train.epochs=5",
         "train.early_stop_patience=1", *TWO_STAGES[2:]]  # fmt: skip


def test_early_stop_ends_the_stage_by_default(tmp_path, synthetic, stalled_validation):
    row = _run(tmp_path, synthetic, EARLY)
    # warm: epoch 1 is the best, epoch 2 stalls and stops the stage; main: starts, stalls, stops
    assert [h["stage"] for h in row["history"]] == ["warm", "warm", "main"]
    assert row["best_epoch"] == 1


def test_early_stop_can_end_the_run(tmp_path, synthetic, stalled_validation):
    row = _run(tmp_path, synthetic, [*EARLY, "train.early_stop_scope=run"])
    assert [h["stage"] for h in row["history"]] == ["warm", "warm"]


def test_a_kill_at_an_early_stop_resumes_into_the_next_stage(tmp_path, synthetic, stalled_validation, monkeypatch):
    full = _run(tmp_path / "full", synthetic, EARLY)
    with monkeypatch.context() as m:
        _killed_after(m, 2)  # the epoch whose stall stopped the first stage
        with pytest.raises(_Killed):
            _run(tmp_path / "killed", synthetic, EARLY)
    row = _run(tmp_path / "killed", synthetic, EARLY, resume=True)
    assert _untimed(row["history"]) == _untimed(full["history"])
    assert row["test"] == full["test"]


def test_resume_refuses_a_checkpoint_of_another_seed(tmp_path, synthetic, uninterrupted):
    seed2 = [*TWO_STAGES, "train.seed=2"]  # the recipe hash leaves the seed out: only the seed differs
    # the seed is in the folder name, so only a copied checkpoint can meet a run of another seed
    s1 = uninterrupted[2] / uninterrupted[0]["run_id"] / "last.pt"  # seed 1
    s2 = run_folder("simple_cnn", load_recipe(None, seed2), synthetic, RunOptions(out=tmp_path, device="cpu"))
    s2 = s2 / "last.pt"
    s2.parent.mkdir()
    shutil.copy(s1, s2)
    with pytest.raises(ConfigError, match=re.escape(s2.parent.name) + r".*seed 1.*seed 2"):
        _run(tmp_path, synthetic, seed2, resume=True)


def test_resume_refuses_a_checkpoint_of_another_recipe_in_process(tmp_path, synthetic, uninterrupted):
    full, _, out = uninterrupted
    other = [*TWO_STAGES, "optim.weight_decay=0.01"]
    # the protocol is in the folder name, so only a copied checkpoint can meet a run of another recipe
    folder = run_folder("simple_cnn", load_recipe(None, other), synthetic, RunOptions(out=tmp_path, device="cpu"))
    shutil.copytree(out / full["run_id"], folder)  # a copy: the module's run stays as it was
    with pytest.raises(ConfigError, match="recipe hash"):
        _run(tmp_path, synthetic, other, resume=True)
