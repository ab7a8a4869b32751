"""Data-parallel training under torchrun (fer_bench.distributed): 2 CPU processes over gloo, SyncBatchNorm on.

Five launches of a tiny run (simple_cnn: batch norm and dropout; 64 synthetic faces, 2 epochs, batch 16, the default
augmentation): one process and two with dropout off (the same numbers, up to float reordering), two with dropout on
(ranks in step, rank 0 alone writing and tracking), and two killed after epoch 1 and resumed (the same numbers).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_bench.distributed import World, check_batches, from_env
from fer_bench.errors import ConfigError

ARGS = ["run", "--models", "simple_cnn", "--epochs", "2", "--limit-train", "64", "--batch-size", "16", "--seed", "1",
        "--split", "public", "--device", "cpu", "--no-progress", "--sync-bn", "--set", "eval.tta=[none]",
        "--set", "eval.batch_size=512"]  # fmt: skip
NO_DROPOUT = ["--set", "model.drop_rate=0"]
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None

# Fixed before the runs. Dropout off, the two-process run computes the one-process loss and gradients on the same
# global batch of the same augmented samples; what differs is the order of float32 sums (SyncBatchNorm's statistics
# gathered from two halves, gradients summed by all-reduce): ~1e-7 relative per step, grown over 8 AdamW steps to
# ~1e-5 in the weights. Hence: class probabilities within 1e-3, epoch losses within 1e-4 relative, and a prediction
# may flip only where two classes tie to that precision: top-1 within one sample and macro-F1 within 1 point.
PROB_TOL, LOSS_RTOL, MACRO_F1_TOL = 1e-3, 1e-4, 1.0


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):  # a pytest run under torchrun must not leak its world in
        env.pop(var, None)
    return env


def _cmd(nproc: int, *args: str) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "fer_bench", *ARGS, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "fer_bench", *ARGS, *args]  # fmt: skip


def _run(nproc: int, out: Path, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run(_cmd(nproc, "--out", str(out), *args), capture_output=True, text=True, env=_env(),
                         timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _row(out: Path) -> tuple[dict, Path]:
    files = list(out.rglob("result.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text()), files[0].parent


def _kill_after_first_epoch(out: Path, *args: str) -> None:
    """Start a two-process run and SIGKILL torchrun and both ranks once epoch 1's last.pt is written."""
    proc = subprocess.Popen(_cmd(2, "--out", str(out), *args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(), start_new_session=True)  # fmt: skip
    deadline, last = time.time() + 600, None
    while time.time() < deadline and proc.poll() is None and last is None:
        time.sleep(0.05)
        last = next(out.rglob("last.pt"), None) if out.exists() else None
    assert last is not None and proc.poll() is None, "the run ended before its first checkpoint"
    # NOTE: torchrun starts each rank in a session of its own, so the ranks are killed by pid, then torchrun
    ranks = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in ranks:
        os.kill(int(pid), signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pid in ranks:  # gone (or a zombie of torchrun's, reaped with it)
        deadline = time.time() + 60
        while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) and time.time() < deadline:
            time.sleep(0.05)
    assert torch.load(last, weights_only=True)["epoch"] == 1 and not list(out.rglob("result.json"))


def _state(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    got = {"root": root, "uri": f"sqlite:///{root}/mlflow.db"}
    got["one"] = _run(1, root / "one", "--no-track", *NO_DROPOUT)
    got["two"] = _run(2, root / "two", "--no-track", *NO_DROPOUT)
    tracking = ["--tracking-uri", got["uri"], "--experiment", "ddp"] if HAS_MLFLOW else ["--no-track"]
    got["dropout"] = _run(2, root / "dropout", *tracking)
    _kill_after_first_epoch(root / "killed", "--no-track")
    got["resumed"] = _run(2, root / "killed", "--no-track", "--resume")
    return got


def test_two_processes_give_the_one_process_numbers(runs):
    one, one_dir = _row(runs["root"] / "one")
    two, two_dir = _row(runs["root"] / "two")
    assert one["world_size"] == 1 and two["world_size"] == 2 and "distributed" not in one
    assert one["protocol_hash"] == two["protocol_hash"]  # the same computation, whatever the number of processes
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=LOSS_RTOL)
        assert b["train_top1"] == pytest.approx(a["train_top1"], abs=100 / one["n_train"] + 1e-9)
        assert b["val_top1"] == pytest.approx(a["val_top1"], abs=100 / one["n_val"] + 1e-9)
    p1, p2 = (np.load(d / "predictions.npz") for d in (one_dir, two_dir))
    assert (p1["ids"] == p2["ids"]).all() and np.abs(p1["probs"] - p2["probs"]).max() <= PROB_TOL
    assert two["test"]["top1"] == pytest.approx(one["test"]["top1"], abs=100 / one["n_test"] + 1e-9)
    assert two["test"]["macro_f1"] == pytest.approx(one["test"]["macro_f1"], abs=MACRO_F1_TOL)


def test_ranks_stay_in_step_and_rank_0_alone_writes_and_tracks(runs):
    row, run_dir = _row(runs["root"] / "dropout")  # dropout and SyncBatchNorm on
    ddp = row["distributed"]
    assert row["world_size"] == 2 and ddp["world_size"] == 2 and ddp["backend"] == "gloo" and ddp["sync_bn"]
    assert len(ddp["param_sha256"]) == 2 and len(set(ddp["param_sha256"])) == 1  # identical parameters on both
    assert {p.name for p in run_dir.iterdir()} >= {"result.json", "last.pt", "best.pt", "predictions.npz"}
    assert not list(run_dir.glob("*.tmp"))
    err = runs["dropout"].stderr
    assert err.count("rows and recipes:") == 1 and err.count("== simple_cnn") == 1  # rank 1 printed no row
    assert "2 processes" in err and runs["dropout"].stdout.count("| simple_cnn") == 1
    mlflow = pytest.importorskip("mlflow")  # the files and output above are checked without it
    mlflow.set_tracking_uri(runs["uri"])
    model_runs = [r for r in mlflow.search_runs(experiment_names=["ddp"], output_format="list")
                  if r.data.tags.get("fer_bench.kind") == "model"]  # fmt: skip
    assert len(model_runs) == 1 and model_runs[0].info.status == "FINISHED"  # one child run: rank 0's
    assert model_runs[0].data.metrics["test_top1"] == pytest.approx(row["test"]["top1"])


def test_a_killed_two_process_run_resumes_to_the_same_numbers(runs):
    full, full_dir = _row(runs["root"] / "dropout")
    resumed, resumed_dir = _row(runs["root"] / "killed")
    assert "resuming after epoch 1" in runs["resumed"].stderr
    timing = ("epoch_train_img_s", "epoch_wall_s")
    strip = lambda h: [{k: v for k, v in e.items() if k not in timing} for e in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(full["history"])
    assert resumed["test"] == full["test"] and resumed["distributed"]["param_sha256"] == full["distributed"][
        "param_sha256"]  # fmt: skip
    assert resumed["predictions"]["sha256"] == full["predictions"]["sha256"]


def test_world_from_torchrun_variables_and_batches_every_rank_needs():
    assert from_env({}) == World() and from_env({"WORLD_SIZE": "1", "RANK": "0"}) == World()
    assert from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    check_batches(64, 16, World(1, 2), "x")  # every batch splits in two
    for n, batch in ((65, 16), (64, 1)):  # a last batch of 1 image, a batch of 1: rank 1 would get none
        with pytest.raises(ConfigError, match="ranks without a sample"):
            check_batches(n, batch, World(1, 2), "x")


@pytest.mark.parametrize("weighted", [False, True])
def test_rank_slices_rebuild_the_global_batch_and_its_gradient(weighted):
    """In one process, without a process group: the ranks' slices of an augmented global batch are the batch the
    one-process run trains on, and the mean of their scaled losses' gradients (what DDP all-reduces) is the global
    loss's gradient, class weights included (10 images over 3 ranks: uneven slices)."""
    from fer_bench.data.augment import BatchAugment, Normalize
    from fer_bench.distributed import BatchShare
    from fer_bench.recipes.schema import AugmentCfg

    torch.manual_seed(0)
    x, y = torch.randint(0, 256, (10, 48, 48), dtype=torch.uint8), torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 0, 3])
    weight = torch.rand(7) + 0.5 if weighted else None
    criterion = torch.nn.CrossEntropyLoss(weight=weight)
    augment = BatchAugment(AugmentCfg(rotate=10.0, erase_p=0.5), Normalize(48, 1, (0.5,), (0.25,)))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))

    full_x, full_y = augment(x, y, torch.Generator().manual_seed(3))
    criterion(model(full_x), full_y).backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    parts, n = [], 3
    for rank in range(n):
        share = BatchShare(augment, criterion, World(rank, n))
        xs, ys = share(x, y, torch.Generator().manual_seed(3))  # every rank's generator: the same seed and draws
        parts.append((xs, ys))
        (criterion(model(xs), ys) * share.loss_scale() / n).backward()  # DDP: the mean of the ranks' gradients
    assert torch.equal(torch.cat([p[0] for p in parts]), full_x)
    assert torch.equal(torch.cat([p[1] for p in parts]), full_y)
    assert [len(p[1]) for p in parts] == [4, 3, 3]
    for got, expected in zip((p.grad for p in model.parameters()), want, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_batch_norm_over_rank_slices_is_a_protocol_of_its_own():
    """N ranks without SyncBatchNorm normalise over B/N images: another protocol hash. With it, or in one process,
    the computation is the one-process one: the same hash."""
    from fer_bench.data import load_dataset
    from fer_bench.recipes import load_recipe
    from fer_bench.runner import RunOptions, run_protocol

    data = load_dataset("synthetic")
    plain, synced = load_recipe(None), load_recipe(None, ["train.sync_bn=true"])
    h = lambda r, world: run_protocol("simple_cnn", r, data, RunOptions(out=None, device="cpu", world=world))[0]  # noqa: E731
    assert h(plain, World()) != h(plain, World(0, 2))
    assert h(synced, World()) == h(synced, World(1, 4)) != h(plain, World())  # sync_bn is hashed when set
