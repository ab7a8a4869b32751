"""Data-parallel training under torchrun (fer_bench.engine.distributed): 2 CPU processes over gloo, SyncBatchNorm on.

Launches of a tiny run (simple_cnn: batch norm and dropout on; 64 synthetic faces, batch 16, the default
augmentation, SGD with momentum; two stages from a weights file: the head alone for an epoch, then everything for
two): one process and two (the same numbers, up to float reordering; ranks in step; rank 0 alone writing, as a
Python audit hook in every process records, and tracking), two killed after epoch 2 (inside the second stage:
momentum and schedule restored) and resumed (the same numbers), and that checkpoint resumed by one process (refused).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_bench.engine.distributed import World, check_batches, from_env
from fer_bench.utils.errors import ConfigError

ARGS = ["run", "--models", "simple_cnn", "--epochs", "3", "--limit-train", "64", "--batch-size", "16", "--seed", "1",
        "--split", "public", "--device", "cpu", "--no-progress", "--sync-bn", "--set", "eval.tta=[none]",
        "--set", "eval.batch_size=512", "--set", "model.drop_rate=0.3", "--set", "optim.name=sgd",
        "--set", "optim.lr=0.005", "--set",
        "stages=[{name: head, epochs: 1, trainable: [head], lr: 0.05}, {name: all, trainable: [all]}]"]  # fmt: skip
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None

# Fixed before the runs. With the dropout masks drawn for the global batch (fer_bench.engine.distributed), the
# two-process run computes the one-process loss and gradients on the same global batch of the same augmented,
# dropped-out samples; what differs is the order of float32 sums (SyncBatchNorm's statistics gathered from two halves,
# gradients summed by all-reduce): ~1e-7 relative per step, grown over 8 SGD steps of every layer (after 4 of the
# head alone, which agree to the bit) to ~1e-5 in the weights. SGD, not AdamW: Adam divides near-zero gradients by
# their own size and so amplifies their reordering (observed with AdamW: 3e-6 relative in the loss after one epoch
# of every layer, 1.1e-4 after two).
# Hence: class probabilities within 1e-3, epoch losses within 1e-4 relative, and a prediction may flip only where
# two classes tie to that precision: top-1 within one sample and macro-F1 within 1 point.
PROB_TOL, LOSS_RTOL, MACRO_F1_TOL = 1e-3, 1e-4, 1.0

# Imported by every Python process of a launch (PYTHONPATH): logs each write under $FER_TEST_WRITES_UNDER (a file
# opened for writing, a rename onto it, a folder made) with the writer's torchrun RANK to $FER_TEST_WRITES_LOG.
AUDIT_HOOK = """
import os, sys
_root, _log = os.environ.get("FER_TEST_WRITES_UNDER"), os.environ.get("FER_TEST_WRITES_LOG")
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_busy = []
def _hook(event, args):
    if _busy or event not in ("open", "os.rename", "os.mkdir"):
        return
    if event == "open" and not (isinstance(args[2], int) and args[2] & _WRITE):
        return
    path = args[1] if event == "os.rename" else args[0]
    if not isinstance(path, (str, bytes, os.PathLike)):
        return
    path = os.path.abspath(os.fsdecode(path))
    if not path.startswith(_root):
        return
    _busy.append(1)
    try:
        fd = os.open(_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{os.environ.get('RANK', '-')}\\t{event}\\t{path}\\n".encode())
        os.close(fd)
    finally:
        _busy.pop()
if _root and _log:
    sys.addaudithook(_hook)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):  # a pytest run under torchrun must not leak its world in
        env.pop(var, None)
    return env


def _cmd(nproc: int, *args: str) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "fer_bench", *ARGS, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "fer_bench", *ARGS, *args]  # fmt: skip


def _run(nproc: int, out: Path, *args: str, check: bool = True, env=None) -> subprocess.CompletedProcess:
    res = subprocess.run(_cmd(nproc, "--out", str(out), *args), capture_output=True, text=True, env=env or _env(),
                         timeout=600)  # fmt: skip
    assert res.returncode == 0 or not check, res.stdout + res.stderr
    return res


def _row(out: Path) -> tuple[dict, Path]:
    files = list(out.rglob("result.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text()), files[0].parent


def _kill_after_epoch(epoch: int, out: Path, *args: str) -> None:
    """Start a two-process run and SIGKILL torchrun and both ranks once last.pt says ``epoch``."""
    proc = subprocess.Popen(_cmd(2, "--out", str(out), *args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(), start_new_session=True)  # fmt: skip
    deadline, last, seen, done = time.time() + 600, None, None, 0
    while time.time() < deadline and proc.poll() is None and done < epoch:
        time.sleep(0.01)
        last = next(out.rglob("last.pt"), None) if out.exists() else None
        if last is not None and last.stat().st_mtime_ns != seen:  # a new checkpoint (written by rename: whole)
            seen, done = last.stat().st_mtime_ns, torch.load(last, weights_only=True)["epoch"]
    assert done == epoch and proc.poll() is None, f"the run ended before its checkpoint of epoch {epoch}"
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
    assert torch.load(last, weights_only=True)["epoch"] == epoch and not list(out.rglob("result.json"))


def _state(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from fer_bench.models.small import SimpleCnn

    root = tmp_path_factory.mktemp("ddp")
    got = {"root": root, "uri": f"sqlite:///{root}/mlflow.db"}
    torch.manual_seed(0)  # the head stage trains from these weights, the backbone frozen
    torch.save(SimpleCnn(num_classes=7, in_chans=1).state_dict(), root / "init.pt")
    weights = ["--weights", str(root / "init.pt")]
    (root / "hook").mkdir()
    (root / "hook" / "sitecustomize.py").write_text(AUDIT_HOOK)
    audited = _env(PYTHONPATH=os.pathsep.join(filter(None, [str(root / "hook"), os.environ.get("PYTHONPATH")])),
                   FER_TEST_WRITES_UNDER=str(root / "two"), FER_TEST_WRITES_LOG=str(root / "writes.log"))  # fmt: skip
    got["one"] = _run(1, root / "one", "--no-track", *weights)
    tracking = ["--tracking-uri", got["uri"], "--experiment", "ddp"] if HAS_MLFLOW else ["--no-track"]
    got["two"] = _run(2, root / "two", *tracking, *weights, env=audited)
    _kill_after_epoch(2, root / "killed", "--no-track", *weights)
    shutil.copytree(root / "killed", root / "killed-one")
    got["refused"] = _run(1, root / "killed-one", "--no-track", "--resume", *weights, check=False)
    got["resumed"] = _run(2, root / "killed", "--no-track", "--resume", *weights)
    return got


def test_two_processes_give_the_one_process_numbers(runs):
    one, one_dir = _row(runs["root"] / "one")
    two, two_dir = _row(runs["root"] / "two")
    assert one["world_size"] == 1 and two["world_size"] == 2 and "distributed" not in one
    assert one["protocol_hash"] == two["protocol_hash"]  # the same computation, whatever the number of processes
    assert [h["stage"] for h in one["history"]] == [h["stage"] for h in two["history"]] == ["head", "all", "all"]
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=LOSS_RTOL)
        assert b["train_top1"] == pytest.approx(a["train_top1"], abs=100 / one["n_train"] + 1e-9)
        assert b["val_top1"] == pytest.approx(a["val_top1"], abs=100 / one["n_val"] + 1e-9)
    p1, p2 = (np.load(d / "predictions.npz") for d in (one_dir, two_dir))
    assert (p1["ids"] == p2["ids"]).all() and np.abs(p1["probs"] - p2["probs"]).max() <= PROB_TOL
    assert two["test"]["top1"] == pytest.approx(one["test"]["top1"], abs=100 / one["n_test"] + 1e-9)
    assert two["test"]["macro_f1"] == pytest.approx(one["test"]["macro_f1"], abs=MACRO_F1_TOL)


def test_ranks_stay_in_step_and_rank_0_alone_writes_and_tracks(runs):
    row, run_dir = _row(runs["root"] / "two")  # dropout and SyncBatchNorm on, two stages
    ddp = row["distributed"]
    assert row["world_size"] == 2 and ddp["world_size"] == 2 and ddp["backend"] == "gloo" and ddp["sync_bn"]
    assert len(ddp["param_sha256"]) == 2 and len(set(ddp["param_sha256"])) == 1  # identical parameters on both
    assert {p.name for p in run_dir.iterdir()} >= {"result.json", "last.pt", "best.pt", "predictions.npz"}
    assert not list(run_dir.glob("*.tmp"))
    writes = [line.split("\t") for line in (runs["root"] / "writes.log").read_text().splitlines()]
    written = {Path(path).name for _, _, path in writes}
    assert {"result.json", "last.pt", "best.pt", "predictions.npz", "recipe.yaml"} <= written  # the hook saw them
    assert {rank for rank, _, _ in writes} == {"0"}, [w for w in writes if w[0] != "0"]  # no other rank wrote
    # NOTE: torch.save writes from C++ (no audit event); a checkpoint shows up as the rename of its .tmp. So every
    # file in the folder must have been logged: a file another rank wrote there from C++ would not be.
    assert {p.name for p in run_dir.iterdir()} <= written, {p.name for p in run_dir.iterdir()} - written
    err = runs["two"].stderr
    assert err.count("rows and recipes:") == 1 and err.count("== model 1/1: simple_cnn") == 1  # rank 1 printed no row
    assert "2 processes" in err and runs["two"].stdout.count("| simple_cnn") == 1
    mlflow = pytest.importorskip("mlflow")  # the files and output above are checked without it
    mlflow.set_tracking_uri(runs["uri"])
    model_runs = [r for r in mlflow.search_runs(experiment_names=["ddp"], output_format="list")
                  if r.data.tags.get("fer_bench.kind") == "model"]  # fmt: skip
    assert len(model_runs) == 1 and model_runs[0].info.status == "FINISHED"  # one child run: rank 0's
    assert model_runs[0].data.metrics["test_top1"] == pytest.approx(row["test"]["top1"])


def test_a_killed_two_process_run_resumes_to_the_same_numbers(runs):
    full, full_dir = _row(runs["root"] / "two")
    resumed, resumed_dir = _row(runs["root"] / "killed")
    assert "resuming after epoch 2" in runs["resumed"].stderr  # inside stage 2: its momentum and schedule restored
    timing = ("epoch_train_img_s", "epoch_wall_s")
    strip = lambda h: [{k: v for k, v in e.items() if k not in timing} for e in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(full["history"])
    assert resumed["test"] == full["test"] and resumed["distributed"]["param_sha256"] == full["distributed"][
        "param_sha256"]  # fmt: skip
    assert resumed["predictions"]["sha256"] == full["predictions"]["sha256"]


def test_a_two_process_checkpoint_is_not_resumed_by_one_process(runs):
    res = runs["refused"]
    assert res.returncode == 2 and "Traceback" not in res.stderr
    (err,) = [line for line in res.stderr.splitlines() if line.startswith("fer-bench: error:")]
    assert "last.pt" in err and "--nproc_per_node" in err  # the checkpoint and the option that must match
    assert not list((runs["root"] / "killed-one").rglob("result.json"))  # nothing recorded as a success


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
    from fer_bench.engine.distributed import BatchShare
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
    from fer_bench.experiment.plan import RunOptions, run_protocol
    from fer_bench.recipes import load_recipe

    data = load_dataset("synthetic")
    plain, synced = load_recipe(None), load_recipe(None, ["train.sync_bn=true"])
    h = lambda r, world: run_protocol("simple_cnn", r, data, RunOptions(out=None, device="cpu", world=world))[0]  # noqa: E731
    assert h(plain, World()) != h(plain, World(0, 2))
    assert h(synced, World()) == h(synced, World(1, 4)) != h(plain, World())  # sync_bn is hashed when set


@pytest.mark.parametrize("layer", ["dropout", "drop_path"])
def test_ranks_draw_the_one_process_dropout_masks_for_their_rows(layer):
    """In one process: under global_batch_dropout each of 3 ranks (10 samples: uneven rows) gets the rows of the mask
    that torch's and timm's own layers draw for the whole batch in one process, bit for bit; the shared generator
    ends where the one-process default generator does, and the default generator is not drawn from."""
    from timm.layers import DropPath

    from fer_bench.engine.distributed import global_batch_dropout, rank_rows, shared_generator

    module = torch.nn.Dropout(0.3) if layer == "dropout" else DropPath(0.3)
    x = torch.randn(10, 6) if layer == "dropout" else torch.randn(10, 4, 3, 3)
    torch.manual_seed(5)
    want, state = module(x), torch.get_rng_state()
    assert 0 < (want == 0).float().mean() < 1 and not torch.equal(want, x)  # dropped some, scaled the rest
    parts = []
    for rank in range(3):
        start, stop = rank_rows(10, World(rank, 3))
        torch.manual_seed(5)
        gen = shared_generator(torch.device("cpu"))  # where the one-process default generator stands
        torch.manual_seed(100 + rank)  # each rank's own default generator: not used for these masks
        before = torch.get_rng_state()
        with global_batch_dropout(start, stop, 10, gen):
            parts.append(module(x[start:stop]))
        assert torch.equal(gen.get_state(), state) and torch.equal(torch.get_rng_state(), before)
    assert torch.equal(torch.cat(parts), want)
    assert [len(p) for p in parts] == [4, 3, 3]
    with global_batch_dropout(0, 4, 10, torch.Generator()), pytest.raises(RuntimeError, match="first dimension"):
        module(x[:5])  # not this rank's 4 rows
    torch.manual_seed(5)
    assert torch.equal(module(x), want)  # restored on leaving
