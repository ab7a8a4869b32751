"""`fer-bench run --suite FILE --jobs N`: cells in parallel processes, GPUs round-robin, failures that fail alone."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from fer_bench import cli
from fer_bench.experiment.jobs import Failure, Slot, plan_slots, run_cells
from fer_bench.utils import devices
from helpers import one_line_error

mlflow = pytest.importorskip("mlflow")

GOOD = "simple_cnn-baseline-s0"
# A line that errors when its model is built: simple_cnn has no pretrained weights (as an offline hub would fail).
SUITE = """
name: tiny
dataset: synthetic
seeds: [0]
splits: [public, private]
set: ["train.epochs=1", "data.limit_train=140", "eval.batch_size=512", "eval.tta=[none]"]
models:
  - {model: simple_cnn, recipe: baseline}
  - {model: simple_cnn, recipe: baseline, set: ["input.pretrained=true"]}
leaderboard: {formats: [md, csv], per_class: false, published: false, plot: false}
"""


def test_slots_take_the_gpus_round_robin_and_share_the_cores():
    four = plan_slots(4, 10, ["0", "1"], cores=16)
    assert [s.gpu for s in four] == ["0", "1", "0", "1"]  # two small jobs per GPU, never two while one idles
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in four] == ["0", "1", "0", "1"]
    assert {s.threads for s in four} == {4} and four[0].env()["OMP_NUM_THREADS"] == "4"
    assert [s.gpu for s in plan_slots(3, 10, ["2", "5", "7"], cores=16)] == ["2", "5", "7"]  # one GPU each
    cpu = plan_slots(2, 10, [], cores=2)
    assert [s.threads for s in cpu] == [1, 1] and all("CUDA_VISIBLE_DEVICES" not in s.env() for s in cpu)
    assert plan_slots(4, 1, [], cores=2) == [Slot(0, None, 2)]  # no more slots than cells: the cores go to it


def test_the_job_gpus_are_the_visible_ones_or_those_asked_for(monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # a child's CUDA_VISIBLE_DEVICES names these, not 0 and 1
    assert devices.visible_gpus() == ["3", "5"] == devices.job_gpus(None, "auto")
    assert devices.job_gpus("5", "cuda") == ["5"] and devices.job_gpus(None, "cpu") == []


def test_each_job_runs_with_its_slots_gpu_and_threads():
    """Two cells at once on a faked pair of GPUs: each process sees only its slot's GPU and thread count."""
    probe = ("import os, time; time.sleep(0.5); "
             "print('env', os.environ['CUDA_VISIBLE_DEVICES'], os.environ['OMP_NUM_THREADS'])")  # fmt: skip
    lines: list[str] = []
    failures = run_cells(["a", "b"], lambda cell: [sys.executable, "-c", probe], plan_slots(2, 2, ["0", "1"], 4),
                         lines.append)  # fmt: skip
    assert failures == []
    seen = {line.split()[0]: line.split()[2:] for line in lines if " env " in line}
    assert sorted(gpu for gpu, _ in seen.values()) == ["0", "1"] and {t for _, t in seen.values()} == {"2"}
    for cell, (gpu, _) in seen.items():  # the process's GPU is the one its start line announced
        assert f"{cell} started (job {int(gpu) + 1}: GPU {gpu}, 2 torch thread(s))" in lines


def test_a_failing_job_fails_alone_and_says_why(monkeypatch):
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # the jobs must not depend on the caller's setting
    scripts = {"a": "import sys; print('one'); print('two', file=sys.stderr)", "c": "print('ok')",
               "b": "print('x'); raise RuntimeError('boom')"}  # fmt: skip
    lines: list[str] = []
    failures = run_cells(list(scripts), lambda cell: [sys.executable, "-c", scripts[cell]], plan_slots(2, 3, [], 2),
                         lines.append)  # fmt: skip
    assert failures == [Failure("b", 1, "RuntimeError: boom")]
    assert "[b] FAILED: RuntimeError: boom" in lines
    assert {"[a] one", "[a] two", "[a] done", "[c] ok", "[c] done", "[b] x"} <= set(lines)
    assert lines.index("[a] one") < lines.index("[a] two")  # a cell's stdout and stderr lines keep their order


@pytest.mark.parametrize(
    ("extra", "expected"),
    [(["--jobs", "0"], "--jobs '0'"), (["--jobs", "two"], "--jobs 'two'"), (["--gpus", "2"], "not among the visible"),
     (["--gpus", "0,0"], "distinct GPU ids"), (["--gpus", "0", "--device", "cpu"], "--device cpu"),
     (["--jobs", "2", "--device", "cuda:1"], "--gpus 1"), (["--gpus", ""], "--gpus is empty")],
)  # fmt: skip
def test_bad_jobs_and_gpus_are_one_line_errors(tmp_path, monkeypatch, capsys, extra, expected):
    monkeypatch.setattr(devices, "visible_gpus", lambda: ["0", "1"])  # a faked two-GPU machine
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    code = cli.main(["run", "--suite", str(suite), "--no-track", "--out", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_jobs_and_gpus_need_a_suite(capsys):
    code = cli.main(["run", "--models", "simple_cnn", "--jobs", "2", "--no-track"])
    one_line_error(code, capsys.readouterr().err, "--jobs", "--suite")


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    """(cell, split) → row of every result file under a suite's ``OUT/<run folder>/`` (a cell: model-recipe-s<seed>)."""
    rows = {}
    for f in out.rglob("result.json"):
        row = json.loads(f.read_text())
        rows[row.get("cell") or f"{row['model']}-{row['recipe']}-s{row['seed']}", row["split"]] = row
    return rows


def test_jobs_2_runs_each_cell_once_as_jobs_1_does_and_a_failed_cell_fails_alone(tmp_path, capsys):
    """In this process (the children are real `fer-bench` processes): a good cell and one failing at build time."""
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    uri, out, previous_uri = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "par", mlflow.get_tracking_uri()
    common = ["run", "--suite", str(suite), "--out", str(out), "--tracking-uri", uri]
    assert cli.main([*common, "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    (bad,) = {line[1 : line.index("]")] for line in err.splitlines() if line.startswith("[")} - {GOOD}
    last = err.strip().splitlines()[-1]
    assert last.startswith("fer-bench: error:") and bad in last and GOOD not in last  # names the failed cell only
    assert re.search(rf"^\[{bad}\] FAILED: .*pretrained weights", err, re.M)  # its own line says why
    assert re.search(rf"^\[{GOOD}\] +epoch 1/1 ", err, re.M) and f"[{GOOD}] done" in err  # one line per epoch
    assert "%|" not in err  # no progress bars

    rows = _rows(out)
    assert set(rows) == {(GOOD, "public"), (GOOD, "private")}  # nothing on disk for the failed cell
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    (parent,) = [r for r in runs if r.data.tags.get("fer_bench.kind") == "suite"]
    assert parent.info.status == "FAILED"
    children = {(r.data.tags["fer_bench.cell"], r.info.run_name, r.info.status) for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}  # fmt: skip
    assert len(children) == len(runs) - 1 == 3  # the good cell's two rows and the failed cell's one try, no other
    assert children == {(GOOD, f"{GOOD}-public", "FINISHED"), (GOOD, f"{GOOD}-private", "FINISHED"),
                        (bad, f"{bad}-public", "FAILED")}  # fmt: skip
    threads = max(1, devices.cpu_cores() // 2)
    assert rows[GOOD, "public"]["device_name"].endswith(f"({threads} threads)")  # the job's share of the cores

    # the same suite without its failing line in one job (here, with all the cores): the same rows
    good = tmp_path / "good" / "tiny.yaml"  # same cell ids and protocols
    good.parent.mkdir()
    good.write_text(SUITE.split("  - {model: simple_cnn, recipe: baseline, set:")[0])
    assert cli.main(["run", "--suite", str(good), "--jobs", "1", "--no-track", "--out", str(tmp_path / "seq")]) == 0
    seq = _rows(tmp_path / "seq")
    assert set(seq) == set(rows)
    for key, row in seq.items():
        assert (rows[key]["protocol_hash"], rows[key]["test"]) == (row["protocol_hash"], row["test"])
        # NOTE: 1 torch thread there, 2 here: the training loss's float sums run in another order (~1e-8 apart)
        assert _learning(rows[key]) == pytest.approx(_learning(row), rel=1e-6)

    # again, with --shard: the share holding the finished cell runs nothing and the table still has its rows
    capsys.readouterr()
    assert cli.main([*common, "--jobs", "2", "--shard", "2/2"]) == 0
    err = capsys.readouterr().err
    assert "1 cell(s) in this share, 1 finished before, 0 to run" in err and "started" not in err
    assert len((out / "leaderboard.csv").read_text().splitlines()) == 3  # public and private lines
    mlflow.set_tracking_uri(previous_uri)


def _learning(row: dict) -> dict[str, float]:
    """The per-epoch figures that depend on the numbers only (not the timings), as ``{"<epoch>.<key>": value}``."""
    keys = ("train_loss", "lr", "val_top1", "val_macro_f1", "val_loss")
    return {f"{h['epoch']}.{k}": h[k] for h in row["history"] for k in keys}
