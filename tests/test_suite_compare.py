"""What the backbone comparison needs of a suite: epochs from a time budget and pilot timings, and a blind mode
that scores no test split until every cell has its validation row."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from fer_bench.experiment.suite import cells, load_suite
from fer_bench.utils.cpu_caps import probe
from fer_bench.utils.errors import ConfigError

mlflow = pytest.importorskip("mlflow")

ROOT = Path(__file__).resolve().parents[1]

TWO_LINES = """
name: tiny
dataset: synthetic
seeds: [0]
splits: [public, private]
set: ["train.epochs=1", "data.limit_train=140", "eval.batch_size=512", "eval.tta=[none]"]
models:
  - {model: simple_cnn, recipe: baseline}
  - {model: simple_cnn, recipe: compare-48, set: ["optim.lr=0.001"]}
leaderboard: {formats: [md, csv], per_class: false, published: false, plot: false}
"""


def fer_bench(*args: str) -> subprocess.CompletedProcess:
    """``fer-bench ARGS`` in this process (a child process pays seconds of imports per call on a busy machine)."""
    from fer_bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = exc.code
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


LINES = ("simple_cnn-baseline", "simple_cnn-compare-48-" + hashlib.sha256(b"optim.lr=0.001").hexdigest()[:6])


def _write(tmp_path: Path, text: str, pilots: dict | None = None) -> Path:
    if pilots is not None:
        (tmp_path / "pilots.yaml").write_text(yaml.safe_dump({"lines": pilots}))
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_budget_sets_each_lines_epochs_from_its_pilot_time(tmp_path):
    pilots = {LINES[0]: {"median_epoch_s": 30.0}, LINES[1]: {"median_epoch_s": 7.0}}
    suite = load_suite(_write(tmp_path, TWO_LINES + "budget_s: 100\npilots: pilots.yaml\n", pilots))
    got = {c.line: c.recipe.train.epochs for c in cells(suite)}
    assert got == {LINES[0]: 3, LINES[1]: 14}  # round(100 / 30), round(100 / 7): the budget beats the suite's set
    assert {c.line: c.recipe.train.epochs for c in cells(suite, ["train.epochs=2"])} == dict.fromkeys(LINES, 2)
    pilots[LINES[0]]["median_epoch_s"] = 500.0  # slower than the budget: still one epoch
    suite = load_suite(_write(tmp_path, TWO_LINES + "budget_s: 100\npilots: pilots.yaml\n", pilots))
    assert {c.line: c.recipe.train.epochs for c in cells(suite)}[LINES[0]] == 1


@pytest.mark.parametrize(
    "extra, pilots, expected",
    [
        ("budget_s: 100\npilots: pilots.yaml\n", {LINES[0]: {"median_epoch_s": 30.0}}, LINES[1]),
        ("budget_s: 100\npilots: pilots.yaml\n", {LINES[0]: {"median_epoch_s": 0}, LINES[1]: {"median_epoch_s": 1}},
         LINES[0]),
        ("budget_s: 100\npilots: nowhere.yaml\n", None, "nowhere.yaml"),
        ("budget_s: 100\n", None, "pilots: FILE"),
    ],
)  # fmt: skip
def test_a_budget_without_a_time_for_every_line_is_refused_in_one_line(tmp_path, extra, pilots, expected):
    path = _write(tmp_path, TWO_LINES + extra, pilots)
    with pytest.raises(ConfigError, match=expected):
        load_suite(path)
    res = fer_bench("run", "--suite", str(path), "--no-track", "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
    assert expected in res.stderr and not (tmp_path / "out").exists()
    res = fer_bench("validate", str(tmp_path))
    pending = pilots is None and "pilots:" in extra  # valid before its pilots run; validate says --pilot comes first
    assert res.returncode == (0 if pending else 2) and expected in res.stdout, res.stdout


def test_pilot_times_two_epochs_of_each_line_and_the_budget_uses_them(tmp_path):
    from fer_bench.utils.provenance import cpu_model, git_sha

    path = _write(tmp_path, TWO_LINES + "budget_s: 60\npilots: timings/pilots.yaml\n")
    res = fer_bench("validate", str(path))
    assert res.returncode == 0 and "--pilot" in res.stdout  # valid before its pilots; it says --pilot comes first
    out = tmp_path / "out"
    res = fer_bench("run", "--suite", str(path), "--pilot", "--no-track", "--no-progress", "--device", "cpu",
                    "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    written = yaml.safe_load((tmp_path / "timings" / "pilots.yaml").read_text())
    assert set(written["lines"]) == set(LINES) and written["epochs"] == 2
    assert written["commit"] == git_sha() and cpu_model() in written["machine"]
    assert written["cpu_class"] == probe().processor_class  # what tools/budget_check.py compares epochs on
    for line in written["lines"].values():
        walls = line["epoch_wall_s"]
        assert len(walls) == 2 and all(w > 0 for w in walls)
        assert line["median_epoch_s"] == pytest.approx(sum(walls) / 2, abs=0.011)
    assert not list(out.rglob("result.json")) and not list(out.rglob("predictions*.npz"))  # nothing tested
    res = fer_bench("validate", str(path), str(tmp_path / "timings" / "pilots.yaml"))
    assert res.returncode == 0 and "pilot timings" in res.stdout, res.stdout
    got = {c.line: c.recipe.train.epochs for c in cells(load_suite(path))}
    assert got == {k: max(1, round(60 / v["median_epoch_s"])) for k, v in written["lines"].items()}


TINY = """
name: tiny
dataset: synthetic
seeds: [0, 1]
splits: [public, private]
set: ["train.epochs=1", "data.limit_train=140", "eval.batch_size=512"]
models:
  - {model: simple_cnn, recipe: baseline}
leaderboard: {formats: [md, csv], per_class: true, published: false, plot: true}
"""
TEST_MARKS = (b"test_top1", b"test_macro_f1", b'"test"', b"test_tta", b"predictions.npz")


def _run(suite: Path, out: Path, *extra: str):
    return fer_bench("run", "--suite", str(suite), "--out", str(out), "--no-progress", "--device", "cpu", *extra)


def _test_traces(out: Path, db: Path) -> list[str]:
    """Every place under ``out`` or in the MLflow store where a test figure or test predictions show."""
    found = [str(f) for f in out.rglob("*") if f.is_file() and (f.name.startswith(("result", "leaderboard"))
             or f.name == "predictions.npz" or any(m in f.read_bytes() for m in TEST_MARKS))]  # fmt: skip
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    for run in mlflow.search_runs(experiment_names=["tiny"], output_format="list"):
        found += [f"mlflow {run.info.run_name}: {k}" for k in run.data.metrics if "test" in k]
        found += [f"mlflow {run.info.run_name}: {k}" for k in run.data.tags if "test" in k and k != "mlflow.runName"]
    with sqlite3.connect(db) as con:  # every metric and param key in the store (a saved view may name a column)
        keys = [k for (k,) in con.execute("SELECT key FROM metrics UNION SELECT key FROM params")]
    found += [f"{db}: {k}" for k in keys if "test" in k]
    return found


@pytest.fixture(scope="module")
def blind(tmp_path_factory):
    """The two-cell suite blind and tracked: one cell, --unblind refused, the other cell, --unblind; and the same
    suite run plainly (not blind, not tracked) as the reference."""
    root = tmp_path_factory.mktemp("blind")
    (root / "plain.yaml").write_text(TINY)
    (root / "blind.yaml").write_text(TINY + "blind: true\n")
    db = root / "mlflow.db"
    track = ("--tracking-uri", f"sqlite:///{db}")
    got = {"root": root, "db": db, "plain": _run(root / "plain.yaml", root / "plain", "--no-track")}
    got["half"] = _run(root / "blind.yaml", root / "out", "--shard", "1/2", *track)
    got["half.traces"] = _test_traces(root / "out", db)
    got["half.rows"] = [json.loads(f.read_text()) for f in (root / "out").rglob("validation.json")]
    got["early"] = _run(root / "blind.yaml", root / "out", "--unblind", *track)
    got["early.traces"] = _test_traces(root / "out", db)
    got["rest"] = _run(root / "blind.yaml", root / "out", "--shard", "2/2", *track)
    got["rest.traces"] = _test_traces(root / "out", db)
    got["unblind"] = _run(root / "blind.yaml", root / "out", "--unblind", *track)
    return got


@pytest.mark.timeout(2400)  # the fixture's six suite runs: ~10 min on the busy 2-core machine
def test_a_blind_suite_shows_no_test_figure_while_a_cell_is_unfinished(blind):
    assert blind["half"].returncode == 0, blind["half"].stderr[-3000:]
    assert "1 of 2 cell(s) have their validation row" in blind["half"].stderr
    assert blind["half.traces"] == [] and blind["half"].stdout.strip() == ""  # no table printed either
    rows = blind["half.rows"]
    assert len(rows) == 1 and rows[0]["best_epoch"] == 1 and rows[0]["cell"] == "simple_cnn-baseline-s0"
    early = blind["early"]  # the test splits are not scored while a cell lacks its validation row
    assert early.returncode == 2 and "Traceback" not in early.stderr and early.stderr.strip().count("\n") == 0
    assert "--unblind" in early.stderr and "simple_cnn-baseline-s1" in early.stderr  # the cell still to train
    assert "simple_cnn-baseline-s0" not in early.stderr
    assert blind["early.traces"] == []
    assert blind["rest"].returncode == 0 and "2 of 2 cell(s) have their validation row" in blind["rest"].stderr
    assert "--unblind" in blind["rest"].stderr and blind["rest.traces"] == []  # all trained, still blind


@pytest.mark.timeout(2400)  # the fixture's six suite runs: ~10 min on the busy 2-core machine
def test_unblinding_writes_what_a_plain_run_writes(blind):
    assert blind["plain"].returncode == 0, blind["plain"].stderr[-3000:]
    assert blind["unblind"].returncode == 0, blind["unblind"].stderr[-3000:]
    assert "2 to run" in blind["unblind"].stderr and "simple_cnn" in blind["unblind"].stdout  # scored now, a table
    out, plain = blind["root"] / "out", blind["root"] / "plain"

    def rows(folder: Path) -> dict:  # (cell, split) → row; a cell is model-recipe-s<seed>
        files = folder.rglob("result.json")
        return {(f"{r['model']}-{r['recipe']}-s{r['seed']}", r["split"]): r
                for f in files for r in [json.loads(f.read_text())]}  # fmt: skip

    got, ref = rows(out), rows(plain)
    assert len(got) == 4 and got.keys() == ref.keys()
    for key, row in got.items():
        assert row["test"] == ref[key]["test"] and row["confusion_matrix"] == ref[key]["confusion_matrix"]
        assert row["predictions"] == ref[key]["predictions"]  # the same per-sample predictions (sha256)
        assert [h["val_macro_f1"] for h in row["history"]] == [h["val_macro_f1"] for h in ref[key]["history"]]
        assert row["segments"] == 1  # unblinding trained nothing
    for name in ("leaderboard.md", "leaderboard.csv", "pareto.png"):
        assert (out / name).is_file()
    mlflow.set_tracking_uri(f"sqlite:///{blind['db']}")
    runs = [r for r in mlflow.search_runs(experiment_names=["tiny"], output_format="list")
            if r.data.tags.get("fer_bench.kind") == "model"]  # fmt: skip
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        row = got[(r.data.tags["fer_bench.cell"], r.data.tags["fer_bench.split"])]
        assert r.data.metrics["test_macro_f1"] == pytest.approx(row["test"]["macro_f1"])
        assert r.data.metrics["val_macro_f1"] == pytest.approx(row["history"][-1]["val_macro_f1"])  # its curve too
    again = _run(blind["root"] / "blind.yaml", out, "--unblind", "--tracking-uri", f"sqlite:///{blind['db']}")
    assert again.returncode == 0 and "2 finished before, 0 to run" in again.stderr  # scored once


@pytest.mark.timeout(2400)  # the fixture's six suite runs: ~10 min on the busy 2-core machine
def test_unblind_needs_a_blind_suite(blind):
    res = _run(blind["root"] / "plain.yaml", blind["root"] / "plain", "--unblind", "--no-track")
    assert res.returncode == 2 and "not blind" in res.stderr and "Traceback" not in res.stderr
