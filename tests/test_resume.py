"""Crash and resume: a CPU run killed with SIGKILL after an epoch, resumed, ends with the same metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

ARGS = ["run", "--models", "simple_cnn", "--epochs", "3", "--limit-train", "600", "--seed", "1", "--no-progress",
        "--no-track", "--set", "eval.tta=[none]", "--set", "eval.batch_size=512"]  # fmt: skip


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_bench", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def _row(out) -> dict:
    return json.loads(next(out.rglob("result.json")).read_text())


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    full = _cli(*ARGS, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

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
    a, b = _row(tmp_path / "full"), _row(out)
    assert [h["val_macro_f1"] for h in a["history"]] == [h["val_macro_f1"] for h in b["history"]]
    assert a["test"] == b["test"] and a["confusion_matrix"] == b["confusion_matrix"]


def test_resume_with_another_recipe_is_refused(tmp_path):
    first = _cli(*ARGS[:4], "1", *ARGS[5:], "--out", str(tmp_path))
    assert first.returncode == 0, first.stderr
    other = _cli(*ARGS[:4], "1", *ARGS[5:], "--out", str(tmp_path), "--resume", "--lr", "0.01")
    assert other.returncode == 2 and "recipe hash" in other.stderr and "Traceback" not in other.stderr
