"""Benchmark suites: validation, sharding, resumable runs tracked to MLflow, and the committed suite files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from fer_bench.evaluation import predictions
from fer_bench.experiment.shards import SLURM_ARRAY_VARS, parse_shard, shard
from fer_bench.experiment.suite import cells, load_suite
from fer_bench.utils.errors import ConfigError
from helpers import SUITES, write_csv

mlflow = pytest.importorskip("mlflow")

from helpers import fer_bench  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {"efficientnetv2_s", "efficientnet_b2"}

TINY = """
name: tiny
dataset: synthetic
seeds: [0, 1]
splits: [public, private]
set: ["train.epochs=1", "data.limit_train=140", "eval.batch_size=512"]
models:
  - {model: simple_cnn, recipe: baseline}
leaderboard: {formats: [md, csv, latex, html], per_class: true, published: false, plot: true}
"""


def test_the_committed_suites_validate_and_hold_the_four_families():
    # the converged CPU suite and the GPU sprint are checked in tests/test_gpu_check.py
    assert {p.name for p in SUITES} == {
        "fer2013-cpu.yaml",
        "fer2013-gpu.yaml",
        "fer2013-cpu-converged.yaml",
        "fer2013-gpu-sprint.yaml",
        "fer2013-compare.yaml",
    }
    for path in (ROOT / "benchmarks" / name for name in ("fer2013-cpu.yaml", "fer2013-gpu.yaml")):
        suite = load_suite(path)
        models = {m.model for m in suite.models}
        assert FAMILIES <= models and any(m.startswith("vgg") for m in models) and any("resnet" in m for m in models)
        insideout = [m for m in suite.models if m.model == "efficientnetv2_s"]
        assert insideout[0].recipe == "insideout-effnetv2s-scratch"  # no pretrained weights here (issue 13)
        assert set(suite.splits) == {"public", "private"}
    gpu = load_suite(ROOT / "benchmarks" / "fer2013-gpu.yaml")
    assert len(gpu.seeds) == 3 and {"vgg16_bn", "resnet50"} <= {m.model for m in gpu.models}
    cpu = cells(load_suite(ROOT / "benchmarks" / "fer2013-cpu.yaml"))
    assert {c.recipe.input.img_size for c in cpu} == {48}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\nmodels: [{model: resnet18}]\nseedz: [0]", ["bad.yaml", "unknown key 'seedz'", "'seeds'"]),
        ("name: x\nmodels: [{model: resnet81}]", ["bad.yaml", "models[0].model", "unknown model 'resnet81'"]),
        ("name: x\nmodels: [{model: resnet18, set: ['optim.lr=-1']}]", ["bad.yaml", "models[0]", "optim.lr"]),
        ("name: x\nmodels: [{model: resnet18}]\nsplits: [val]", ["bad.yaml", "splits", "public, private, test"]),
        ("name: x\nmodels: [{model: vgg_khaireddin, recipe: khaireddin-vgg}]\nsplits: [public, private]",
         ["bad.yaml", "validates on private", "models[0].splits"]),
        ("name: x\nmodels: [{model: resnet18}, {model: resnet18}]",
         ["bad.yaml", "listed twice", "resnet18-baseline-s0"]),
        ("name: x\nmodels: []", ["bad.yaml", "models is empty"]),
        ("name: x\nmodels: [{model: resnet18}]\nseeds: 0", ["bad.yaml", "seeds = 0", "a list of int"]),
    ],
)  # fmt: skip
def test_a_broken_suite_names_file_key_and_fix(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    for part in expected:
        assert part in str(err.value)


def test_validate_checks_suite_files_too(tmp_path):
    res = fer_bench("validate", str(ROOT / "benchmarks"))
    every = sorted((ROOT / "benchmarks").glob("*.yaml"))  # the five FER2013 suites and the FER+ one
    assert len(SUITES) == 5 and len(every) == 6 and "ferplus-cpu-converged.yaml" in {p.name for p in every}
    assert res.returncode == 0 and f"{len(every)} valid, 0 invalid" in res.stdout, res.stdout
    (tmp_path / "bad.yaml").write_text("name: x\nmodels: [{model: resnet18, sett: []}]")
    res = fer_bench("validate", str(tmp_path))
    assert res.returncode == 2 and "unknown key 'models[0].sett'" in res.stdout and "'models[0].set'" in res.stdout


def test_shards_partition_the_cells_deterministically():
    all_cells = cells(load_suite(ROOT / "benchmarks" / "fer2013-gpu.yaml"))
    parts = [[c.id for c in shard(all_cells, k, 4)] for k in (1, 2, 3, 4)]
    assert sorted(sum(parts, [])) == sorted(c.id for c in all_cells)  # every cell once, no overlap
    assert parts == [[c.id for c in shard(all_cells, k, 4)] for k in (1, 2, 3, 4)]
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) == (1, 1)
    for bad in ("0/3", "4/3", "2", "a/b"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def _array_env(task: int, lo: int, hi: int, step: int = 1) -> dict[str, str]:
    """What SLURM sets in task ``task`` of ``sbatch --array=lo-hi:step``."""
    values = (task, (hi - lo) // step + 1, lo, hi, step)
    return {var: str(v) for var, v in zip(SLURM_ARRAY_VARS, values, strict=True)}


def test_shard_auto_gives_every_cell_to_exactly_one_array_task():
    all_cells = cells(load_suite(ROOT / "benchmarks" / "fer2013-gpu.yaml"))
    for lo, hi, step in [(0, 3, 1), (1, 4, 1), (1, 7, 2), (3, 23, 4), (5, 5, 1)]:  # from 0, from 1, stepped, one task
        shares = [parse_shard("auto", _array_env(t, lo, hi, step)) for t in range(lo, hi + 1, step)]
        n = (hi - lo) // step + 1
        assert shares == [(k, n) for k in range(1, n + 1)]  # task i of the array takes share i, whatever its id
        parts = [c.id for k, n in shares for c in shard(all_cells, k, n)]
        assert sorted(parts) == sorted(c.id for c in all_cells) and len(parts) == len(all_cells)  # each cell once


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_MAX, "
             "SLURM_ARRAY_TASK_STEP not set"),
        ({**_array_env(1, 1, 7, 2), "SLURM_ARRAY_TASK_STEP": ""}, "SLURM_ARRAY_TASK_STEP not set"),
        ({**_array_env(1, 1, 7, 2), "SLURM_ARRAY_TASK_ID": "x"}, "SLURM_ARRAY_TASK_ID='x' is not an integer"),
        (_array_env(2, 1, 7, 2), "SLURM_ARRAY_TASK_ID=2 is not a task of the array"),
        (_array_env(9, 1, 7, 2), "SLURM_ARRAY_TASK_ID=9 is not a task of the array"),
        ({**_array_env(3, 0, 7, 1), "SLURM_ARRAY_TASK_COUNT": "3"}, "do not describe one range"),  # --array=0,3,7
        ({**_array_env(3, 1, 7, 2), "SLURM_ARRAY_TASK_STEP": "0"}, "do not describe one range"),
    ],
)  # fmt: skip
def test_shard_auto_refuses_missing_or_inconsistent_array_variables(env, expected):
    with pytest.raises(ConfigError) as err:
        parse_shard("auto", env)
    assert expected in str(err.value) and "--shard auto" in str(err.value) and "--shard K/N" in str(err.value)


def test_shard_auto_on_the_command_line(on_disk, monkeypatch):
    """The CLI takes its share from the array variables: the one-cell suite of ``on_disk`` (finished, so nothing
    trains) is all of share 1 of ``--array=1-3:2`` and none of share 2; outside an array: one line, exit 2."""
    suite, out = on_disk["out"].parent / "tiny.yaml", on_disk["out"]
    common = ("run", "--suite", str(suite), "--out", str(out), "--no-progress", "--no-track", "--shard", "auto")
    for var in SLURM_ARRAY_VARS:
        monkeypatch.delenv(var, raising=False)
    res = fer_bench(*common)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "SLURM_ARRAY_TASK_ID" in res.stderr, res.stderr
    for task, told in [(1, "1 cell(s) in this share, 1 finished before, 0 to run"),
                       (3, "0 cell(s) in this share, 0 finished before, 0 to run")]:  # fmt: skip
        for var, value in _array_env(task, 1, 3, 2).items():
            monkeypatch.setenv(var, value)
        res = fer_bench(*common)
        assert res.returncode == 0 and told in res.stderr, res.stderr


def _model_runs(uri: str, experiment: str = "tiny"):
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return [r for r in runs if r.data.tags.get("fer_bench.kind") == "model"]


def _steps(root: Path, suite_text: str, tracking: list[str], steps: dict[str, list[str]]) -> dict:
    """Run the suite ``suite_text`` once per step (name → extra options), in order, into ``root/out``.

    Returns ``out``, each step's process, and after each step the result files (path → row) and the table's lines,
    and with tracking the model runs in the store."""
    suite = root / "tiny.yaml"
    suite.write_text(suite_text)
    out = root / "out"
    common = ("run", "--suite", str(suite), "--out", str(out), "--no-progress", *tracking)
    got: dict = {"out": out, "uri": tracking[-1] if tracking[0] == "--tracking-uri" else None}
    for name, extra in steps.items():
        got[name] = fer_bench(*common, *extra)
        got[f"{name}.rows"] = {f: json.loads(f.read_text()) for f in out.rglob("result.json")}
        table = out / "leaderboard.csv"
        got[f"{name}.table"] = table.read_text().splitlines() if table.is_file() else []
        got[f"{name}.files"] = {f.name for f in out.iterdir()} if out.is_dir() else set()
        if got["uri"]:
            got[f"{name}.runs"] = _model_runs(got["uri"])
    return got


# One smoke run per store (tracked and on disk), one changing the schedule and one the data; which recipe and data
# fields enter the protocol hash is tested field by field in test_protocol.py (fewer runs: CI time). Each store's
# runs are made once (a module fixture) and serve two tests: the tracked one the sharded suite's, the on-disk one
# the untracked suite's.
@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Tracked: a smoke run (2 epochs) of shard 1 of the two-seed suite, then shard 1, shard 2 and the whole."""
    root = tmp_path_factory.mktemp("tracked")
    steps = {"smoke": ["--shard", "1/2", "--epochs", "2"], "real": ["--shard", "1/2"], "second": ["--shard", "2/2"],
             "again": []}  # fmt: skip
    return _steps(root, TINY, ["--tracking-uri", f"sqlite:///{root}/mlflow.db"], steps)


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """Untracked: a smoke run (70 images) of the one-seed suite, then the real suite, then the real suite again."""
    steps = {"smoke": ["--limit-train", "70"], "real": [], "again": []}
    return _steps(tmp_path_factory.mktemp("on-disk"), TINY.replace("seeds: [0, 1]", "seeds: [0]"), ["--no-track"],
                  steps)  # fmt: skip


def _real(got: dict, step: str) -> list:
    """The model runs in the store after ``step`` that are not the smoke run's (those the smoke step left)."""
    smoke = {r.info.run_id for r in got["smoke.runs"]}
    return [r for r in got[f"{step}.runs"] if r.info.run_id not in smoke]


def test_two_shards_run_one_suite_and_a_rerun_skips_finished_cells(tracked):
    got = tracked
    assert len(got["smoke.runs"]) == 2  # the smoke run's one cell on both splits (its test is below)
    assert got["real"].returncode == 0, got["real"].stderr
    assert len(_real(got, "real")) == 2  # one cell (seed), evaluated on both splits
    assert got["second"].returncode == 0, got["second"].stderr
    runs = _real(got, "second")
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert {(r.data.tags["fer_bench.cell"], r.data.tags["fer_bench.split"]) for r in runs} == {
        (f"simple_cnn-baseline-s{s}", split) for s in (0, 1) for split in ("public", "private")
    }
    for r in runs:  # the private row reuses the public row's weights: same training, its own test figures
        assert r.data.tags["fer_bench.suite"] == "tiny" and "test_macro_f1" in r.data.metrics
    # the table of the second shard sees the first shard's rows too: 2 seeds per (model, split)
    csv = got["second.table"]
    seeds = csv[0].split(",").index("seeds")  # by name: the interval/calibration columns come after it
    assert len(csv) == 3 and all(line.split(",")[seeds] for line in csv[1:])
    split = csv[0].split(",").index("split")
    assert {"public", "private"} <= {line.split(",")[split] for line in csv[1:]}
    for name in ("leaderboard.md", "leaderboard.tex", "leaderboard.html", "pareto.png"):
        assert name in got["second.files"], name
    assert got["again"].returncode == 0, got["again"].stderr
    assert "2 cell(s) in this share, 2 finished before, 0 to run" in got["again"].stderr
    assert len(_real(got, "again")) == 4 and len(got["again.runs"]) == 6  # nothing rerun, the smoke run's kept


def test_untracked_suite_resumes_from_result_files(on_disk):
    got = on_disk
    assert got["real"].returncode == 0, got["real"].stderr
    res = got["again"]
    assert res.returncode == 0 and "1 finished before, 0 to run" in res.stderr
    files = [f for f in got["again.rows"] if f not in got["smoke.rows"]]  # the real suite's (the smoke's: below)
    assert len(files) == 2
    for f in got["again.rows"]:  # the trained split and the one evaluated from its weights: predictions beside each
        row = json.loads(f.read_text())
        path = f.parent / row["predictions"]["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["predictions"]["sha256"]
        assert predictions.score(path, tuple(row["classes"]))["macro_f1"] == row["test"]["macro_f1"]


def test_a_finished_split_lends_its_row_to_the_next_without_testing_again(on_disk, tmp_path):
    """The cell's trained split is finished, its second split is not: the second is scored from the first's row and
    weights, and the first's row is read, not rebuilt (its file keeps its bytes)."""
    assert on_disk["real"].returncode == 0, on_disk["real"].stderr
    out = tmp_path / "out"
    shutil.copytree(on_disk["out"], out)
    real = {f.relative_to(on_disk["out"]): r for f, r in on_disk["real.rows"].items() if f not in on_disk["smoke.rows"]}
    public = next(out / f for f, r in real.items() if r["split"] == "public")
    private = next(out / f for f, r in real.items() if r["split"] == "private")
    before = public.read_bytes()
    private.unlink()
    suite = on_disk["out"].parent / "tiny.yaml"
    res = fer_bench("run", "--suite", str(suite), "--out", str(out), "--no-progress", "--no-track")
    assert res.returncode == 0, res.stderr
    assert public.read_bytes() == before and "epoch 1/" not in res.stderr and "testing on public" not in res.stderr
    row = json.loads(private.read_text())
    assert row["split"] == "private" and row["trained_run_id"] == json.loads(before)["run_id"]


@pytest.mark.parametrize("store", ["tracked", "on_disk"])
def test_a_smoke_run_never_stands_in_for_the_real_cell(request, store):
    """A suite run with other settings (a tracked or on-disk smoke run) does not make the real suite skip its cell."""
    got = request.getfixturevalue(store)
    assert got["smoke"].returncode == 0, got["smoke"].stderr
    assert got["real"].returncode == 0, got["real"].stderr
    assert "1 cell(s) in this share, 0 finished before, 1 to run" in got["real"].stderr  # the smoke row did not count
    assert "finished before, 0 to run" in got["again"].stderr  # the real one does
    assert "0 finished before" not in got["again"].stderr
    smoke = {r["protocol_hash"] for r in got["smoke.rows"].values()}
    assert len(got["smoke.rows"]) == 2 and len(smoke) == 1  # its one cell on both splits
    rows = got["again.rows"]
    real = [r for f, r in rows.items() if f not in got["smoke.rows"]]
    assert len({r["protocol_hash"] for r in real}) == 1 and not smoke & {r["protocol_hash"] for r in real}
    assert sorted(r["split"] for r in real) == sorted(["public", "private"] * (len(real) // 2)) and real
    assert all(rows[f] == r for f, r in got["smoke.rows"].items())  # the smoke rows were left as they were
    table = got["again.table"]
    assert len(table) == 3  # the real suite's table: its own protocol only, one line per split


def test_suite_and_models_are_exclusive(tmp_path):
    res = fer_bench("run", "--models", "simple_cnn", "--suite", str(SUITES[0]), "--no-track")
    assert res.returncode == 2 and "either --models" in res.stderr and "Traceback" not in res.stderr
    res = fer_bench("run", "--models", "simple_cnn", "--shard", "1/2", "--no-track")
    assert res.returncode == 2 and "--shard" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the from-scratch EfficientNet cells train every layer: ~4-6 min on 2 cores
def test_every_cell_of_the_gpu_suite_runs_on_cpu(tmp_path):
    """The GPU protocol is known to work before a GPU comes: every model line, tiny, on CPU, one seed (seeds change
    nothing but the seed); 2 epochs, so that each goes from one epoch to the next (every line of this suite has one
    stage: the InsideOut and Naik lines are their from-scratch variants, without the frozen warm-up).

    On the suite's own dataset, FER2013, as a CSV of 4 faces per class and usage: every split has faces, and the
    test splits are 28 faces, not the synthetic set's 500 (evaluating 500 through VGG16 and EfficientNets was most
    of this test's time)."""
    write_csv(tmp_path / "fer2013.csv", n_per=4)
    res = fer_bench("run", "--suite", str(ROOT / "benchmarks" / "fer2013-gpu.yaml"),
                    "--data-dir", str(tmp_path / "fer2013.csv"), "--seeds", "0",
                    "--epochs", "2", "--limit-train", "14", "--img-size", "32", "--set", "eval.batch_size=512",
                    "--set", "data.val_fraction=0.25", "--set", "eval.tta=[none]", "--device", "cpu", "--no-track",
                    "--no-progress",
                    "--out", str(tmp_path / "out"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(f.read_text()) for f in (tmp_path / "out").rglob("result.json")]
    assert len(rows) == 6 * 2 - 1  # six model lines x two splits, khaireddin-vgg on PublicTest only
    assert {(r["dataset"], r["n_train"], r["n_test"], r["epochs_run"]) for r in rows} == {("fer2013", 14, 28, 2)}
    assert (tmp_path / "out" / "leaderboard.md").is_file()


def test_the_comparison_suite_is_the_plan_it_cites():
    """benchmarks/fer2013-compare.yaml holds what results/fer2013-compare/PLAN.md fixes: five lines on three seeds,
    45 minutes a cell, blind, one precision and memory format, and the VGG's learning rate as its only override."""
    suite = load_suite(ROOT / "benchmarks" / "fer2013-compare.yaml", pilot=True)
    assert suite.seeds == (0, 1, 2) and suite.budget_s == 2700 and suite.blind
    assert set(suite.splits) == {"public", "private"}
    assert set(suite.set) == {"train.precision=fp32", "train.channels_last=false"}
    all_cells = cells(suite, budget=False)
    assert len(all_cells) == 15 and len({c.line for c in all_cells}) == 5
    assert {c.recipe.input.img_size for c in all_cells} == {48}
    assert {(c.recipe.train.precision, c.recipe.train.channels_last, c.recipe.train.compile) for c in all_cells} == {
        ("fp32", False, None)
    }
    common = [c for c in all_cells if c.recipe.name == "compare-48"]
    assert {c.model for c in common} == {"resnet18", "vgg_khaireddin", "efficientnet_b2", "efficientnetv2_s"}
    assert {c.recipe.optim.lr for c in common if c.model != "vgg_khaireddin"} == {0.002}
    assert {c.recipe.optim.lr for c in common if c.model == "vgg_khaireddin"} == {0.0005}
    insideout = [c for c in all_cells if c.recipe.name == "insideout-effnetv2s-scratch"]
    assert len(insideout) == 3 and {c.recipe.train.early_stop_patience for c in insideout} == {0}
    assert all(c.recipe.input.pretrained is False for c in all_cells)
    assert (ROOT / "results" / "fer2013-compare" / "PLAN.md").is_file()


def test_the_comparison_budget_gives_each_line_the_epochs_its_plan_and_amendments_say():
    """E = round(2700 / t): the pilots' t, except the lines the time rule re-derived (PLAN.md's amendments), whose t
    in pilots-amended.yaml is their seed-0 cell's mean epoch and which name that cell and the pilot's t."""
    import yaml

    folder = ROOT / "results" / "fer2013-compare"
    suite = load_suite(ROOT / "benchmarks" / "fer2013-compare.yaml")
    assert Path(suite.pilots).name == "pilots-amended.yaml"
    epochs = {c.line: c.recipe.train.epochs for c in cells(suite)}
    assert epochs == {
        "resnet18-compare-48": 12,
        "vgg_khaireddin-compare-48-0cb4b1": 3,
        "efficientnet_b2-compare-48": 6,
        "efficientnetv2_s-compare-48": 4,
        "efficientnetv2_s-insideout-effnetv2s-scratch-268ae1": 4,
    }
    pilots = yaml.safe_load((folder / "pilots.yaml").read_text())["lines"]
    amended = yaml.safe_load((folder / "pilots-amended.yaml").read_text())["lines"]
    assert amended.keys() == pilots.keys()
    changed = {line for line in pilots if amended[line] != pilots[line]}
    assert changed == {
        "resnet18-compare-48",
        "efficientnetv2_s-compare-48",
        "efficientnetv2_s-insideout-effnetv2s-scratch-268ae1",
    }
    assert changed == {line for line in amended if "rederived_from" in amended[line]}
    for line in changed:
        source = amended[line]["rederived_from"]
        assert source["cell"] == f"{line}-s0" and source["pilot_median_epoch_s"] == pilots[line]["median_epoch_s"]
    plan = (folder / "PLAN.md").read_text()
    assert "\n## Amendments" in plan and "pilots-amended.yaml" in plan.split("\n## Amendments")[1]


def test_every_committed_comparison_row_descends_from_its_plan():
    import subprocess
    import sys

    folder = ROOT / "results" / "fer2013-compare"
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    if not any(folder.rglob("result.json")) and not any(folder.rglob("validation.json")):
        pytest.skip("no comparison row committed yet (its plan is)")
    cmd = [sys.executable, str(ROOT / "tools" / "plan_check.py"), str(folder), str(folder / "PLAN.md")]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_validate_passes_a_budgeted_suite_before_its_pilots_and_says_what_comes_first(tmp_path):
    (tmp_path / "b.yaml").write_text(TINY + "budget_s: 60\npilots: pilots.yaml\n")
    res = fer_bench("validate", str(tmp_path / "b.yaml"))
    assert res.returncode == 0 and "1 valid, 0 invalid" in res.stdout, res.stdout
    assert "pilots.yaml" in res.stdout and "--pilot" in res.stdout
    (tmp_path / "pilots.yaml").write_text("lines: {other-line: {median_epoch_s: 5}}\n")
    res = fer_bench("validate", str(tmp_path / "b.yaml"))  # a pilots file that misses a line is an error again
    assert res.returncode == 2 and "simple_cnn-baseline" in res.stdout, res.stdout
