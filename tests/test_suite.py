"""Benchmark suites: validation, sharding, resumable runs tracked to MLflow, and the committed suite files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fer_bench import predictions
from fer_bench.errors import ConfigError
from fer_bench.suite import cells, load_suite, parse_shard, shard

mlflow = pytest.importorskip("mlflow")

from test_cli import fer_bench  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "benchmarks").glob("fer2013-*.yaml"))
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
    assert {p.name for p in SUITES} == {"fer2013-cpu.yaml", "fer2013-gpu.yaml", "fer2013-cpu-converged.yaml",
                                        "fer2013-gpu-sprint.yaml"}
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
    assert res.returncode == 0 and "2 valid, 0 invalid" in res.stdout, res.stdout
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


def _model_runs(uri: str, experiment: str = "tiny"):
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return [r for r in runs if r.data.tags.get("fer_bench.kind") == "model"]


def test_two_shards_run_one_suite_and_a_rerun_skips_finished_cells(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    uri, out = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "out"
    common = ("run", "--suite", str(suite), "--out", str(out), "--tracking-uri", uri, "--no-progress")
    first = fer_bench(*common, "--shard", "1/2")
    assert first.returncode == 0, first.stderr
    assert len(_model_runs(uri)) == 2  # one cell (seed), evaluated on both splits
    second = fer_bench(*common, "--shard", "2/2")
    assert second.returncode == 0, second.stderr
    runs = _model_runs(uri)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert {(r.data.tags["fer_bench.cell"], r.data.tags["fer_bench.split"]) for r in runs} == {
        (f"simple_cnn-baseline-s{s}", split) for s in (0, 1) for split in ("public", "private")
    }
    for r in runs:  # the private row reuses the public row's weights: same training, its own test figures
        assert r.data.tags["fer_bench.suite"] == "tiny" and "test_macro_f1" in r.data.metrics
    # the table of the second shard sees the first shard's rows too: 2 seeds per (model, split)
    csv = (out / "leaderboard.csv").read_text().splitlines()
    assert len(csv) == 3 and all(line.split(",")[-1] for line in csv[1:])
    split = csv[0].split(",").index("split")
    assert {"public", "private"} <= {line.split(",")[split] for line in csv[1:]}
    for name in ("leaderboard.md", "leaderboard.tex", "leaderboard.html", "pareto.png"):
        assert (out / name).is_file(), name
    again = fer_bench(*common)
    assert again.returncode == 0, again.stderr
    assert "2 cell(s) in this share, 2 finished before, 0 to run" in again.stderr
    assert len(_model_runs(uri)) == 4  # nothing rerun


def test_untracked_suite_resumes_from_result_files(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY.replace("seeds: [0, 1]", "seeds: [0]"))
    common = ("run", "--suite", str(suite), "--out", str(tmp_path / "out"), "--no-track", "--no-progress")
    assert fer_bench(*common).returncode == 0
    res = fer_bench(*common)
    assert res.returncode == 0 and "1 finished before, 0 to run" in res.stderr
    files = list((tmp_path / "out").rglob("result.json"))
    assert len(files) == 2
    for f in files:  # the trained split and the one evaluated from its weights: predictions beside each row
        row = json.loads(f.read_text())
        path = f.parent / row["predictions"]["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["predictions"]["sha256"]
        assert predictions.score(path, tuple(row["classes"]))["macro_f1"] == row["test"]["macro_f1"]


# One smoke run per store (tracked and on disk), one changing the schedule and one the data; which recipe and data
# fields enter the protocol hash is tested field by field in test_protocol.py (fewer runs: CI time).
@pytest.mark.parametrize(("smoke", "track"), [(["--epochs", "2"], True), (["--limit-train", "70"], False)])
def test_a_smoke_run_never_stands_in_for_the_real_cell(tmp_path, smoke, track):
    """A suite run with other settings (a tracked or on-disk smoke run) does not make the real suite skip its cell."""
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY.replace("seeds: [0, 1]", "seeds: [0]"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking = ["--tracking-uri", uri] if track else ["--no-track"]
    common = ("run", "--suite", str(suite), "--out", str(tmp_path / "out"), "--no-progress", *tracking)
    first = fer_bench(*common, *smoke)
    assert first.returncode == 0, first.stderr
    real = fer_bench(*common)
    assert real.returncode == 0, real.stderr
    assert "1 cell(s) in this share, 0 finished before, 1 to run" in real.stderr  # the smoke row did not count
    again = fer_bench(*common)
    assert "1 finished before, 0 to run" in again.stderr  # the real one does
    rows = [json.loads(f.read_text()) for f in (tmp_path / "out").rglob("result.json")]
    assert len({r["protocol_hash"] for r in rows}) == 2 and len(rows) == 4  # two protocols x two splits
    table = (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()
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
    nothing but the seed); 4 epochs because Naik's 3-epoch head warm-up needs a fine-tuning epoch after it."""
    res = fer_bench("run", "--suite", str(ROOT / "benchmarks" / "fer2013-gpu.yaml"), "--dataset", "synthetic",
                    "--seeds", "0",
                    "--epochs", "4", "--limit-train", "14", "--img-size", "32", "--set", "eval.batch_size=512",
                    "--set", "data.val_fraction=0.02", "--set", "eval.tta=[none]", "--device", "cpu", "--no-track",
                    "--no-progress",
                    "--out", str(tmp_path))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rows = list(tmp_path.rglob("result.json"))
    assert len(rows) == 6 * 2 - 1  # six model lines x two splits, khaireddin-vgg on PublicTest only
    assert (tmp_path / "leaderboard.md").is_file()
