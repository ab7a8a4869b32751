"""`fer-bench tune` on the synthetic set: completes, resumes, prunes, and shares a journal between workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from fer_bench.recipes import load_recipe  # noqa: E402
from fer_bench.tune import TuneJob, create_study, final_compare, tune  # noqa: E402

SEARCH = Path(__file__).resolve().parents[1] / "configs" / "search" / "loss-aug.yaml"
FAST = ("train.epochs=2", "data.limit_train=140", "eval.batch_size=512", "train.batch_size=64")


def _job(out: Path, trials: int, **kw) -> TuneJob:
    return TuneJob(SEARCH, "baseline", "simple_cnn", "synthetic", None, FAST, out, None, trials, **kw)


def _study(job: TuneJob):
    return create_study(job, f"loss-aug-{job.model}-{job.base_recipe}")


def test_study_completes_writes_a_recipe_and_resumes(tmp_path):
    job = _job(tmp_path, 3, track=False)
    result = tune(job)
    assert result["trials"] == 3
    recipe = load_recipe(result["best_recipe"])  # `fer-bench run --recipe` accepts it
    assert recipe.name == "baseline-tuned"
    again = tune(job)
    trials = _study(job).trials
    assert again["trials"] == 6 and [t.number for t in trials] == list(range(6))
    # trial 0 is the base recipe's own values (here all of them lie inside the space); later ones are sampled
    base = load_recipe("baseline", list(FAST))
    assert trials[0].user_attrs == {"base_recipe": True} and not trials[1].user_attrs
    assert trials[0].params["loss.class_weight_power"] == base.loss.class_weight_power == 0.0
    assert trials[0].params["augment.translate"] == base.augment.translate
    assert trials[0].params["optim.lr"] == base.optim.lr and trials[0].params["loss.name"] == base.loss.name


def test_final_compares_best_and_base_on_the_test_split_over_seeds(tmp_path):
    import json

    import pandas as pd

    job = _job(tmp_path, 1, track=False)
    tune(job)
    text = final_compare(job, [0, 1])
    rows = {}
    for f in (tmp_path / "final").rglob("result.json"):
        row = json.loads(f.read_text())
        assert row["split"] == "test" and row["n_train"] == 140 and row["epochs_run"] == 2
        rows[f.parts[-3]] = row
    assert sorted(rows) == ["base-s0", "base-s1", "tuned-s0", "tuned-s1"]
    assert rows["tuned-s1"]["seed"] == 1 and rows["tuned-s1"]["recipe"] == "baseline-tuned"
    table = pd.read_csv(tmp_path / "final.csv").set_index("recipe")
    assert set(table.index) == {"baseline", "baseline-tuned"} and (table["seeds"] == 2).all()
    for recipe, label in (("baseline", "base"), ("baseline-tuned", "tuned")):
        for col in ("macro_f1", "f1_disgust"):
            runs = [rows[f"{label}-s{s}"]["test"][col] for s in (0, 1)]
            assert table.loc[recipe, col] == pytest.approx(sum(runs) / 2, abs=1e-3)
    assert "macro-F1" in text and (tmp_path / "final.md").read_text().startswith(text.splitlines()[0])
    mtimes = {f: f.stat().st_mtime for f in (tmp_path / "final").rglob("result.json")}
    final_compare(job, [0, 1])  # again: finished runs are read back, not retrained
    assert {f: f.stat().st_mtime for f in (tmp_path / "final").rglob("result.json")} == mtimes


def test_pruned_trials_are_tagged_in_mlflow(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    job = _job(tmp_path, 1, tracking_uri=uri, experiment="tune-test")
    tune(job)
    study = _study(job)
    # Make the next trial look hopeless against a strong median so the pruner stops it after epoch 1.
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(
            params=study.trials[0].params, distributions=study.trials[0].distributions, value=100.0,
            intermediate_values={1: 100.0, 2: 100.0}))  # fmt: skip
    tune(_job(tmp_path, 1, tracking_uri=uri, experiment="tune-test"))
    pruned = [t for t in _study(job).trials if t.state.name == "PRUNED"]
    assert len(pruned) == 1
    run = mlflow.MlflowClient(uri).get_run(pruned[0].user_attrs["mlflow_run_id"])
    assert run.data.tags["optuna.state"] == "PRUNED"
    assert run.data.params["trial_number"] == str(pruned[0].number)


def test_two_workers_share_one_journal_without_lost_or_duplicate_trials(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "fer_bench",
        "tune",
        "--search",
        str(SEARCH),
        "--model",
        "simple_cnn",
        "--trials",
        "4",
        "--workers",
        "2",
        "--out",
        str(tmp_path),
        "--no-track",
        *sum((["--set", s] for s in FAST), []),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    trials = _study(_job(tmp_path, 0, track=False)).trials
    assert [t.number for t in trials] == list(range(len(trials)))
    assert 4 <= len(trials) <= 5  # MaxTrialsCallback stops each worker once 4 exist; one may be in flight
    # every trial finished (the median pruner may stop one below the base trial 0): none lost, failed or left running
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials) and trials[0].state.name == "COMPLETE"


PG = os.environ.get("FER_BENCH_TEST_PG_OPTUNA")


@pytest.mark.skipif(not PG and not os.environ.get("CI"), reason="PostgreSQL not set up (scripts/start-postgres.sh)")
def test_postgresql_rdb_storage(tmp_path):
    assert PG, "CI must run scripts/start-postgres.sh and export FER_BENCH_TEST_PG_OPTUNA"
    job = TuneJob(SEARCH, "baseline", "simple_cnn", "synthetic", None, FAST, tmp_path, PG, 2, track=False)
    name = f"loss-aug-simple_cnn-baseline-{os.getpid()}"
    study = create_study(job, name)
    assert "RDBStorage" in type(study._storage).__name__ or "Cached" in type(study._storage).__name__
    from fer_bench.tune import run_worker

    run_worker(job, name, 2)
    assert len(create_study(job, name).trials) == 2
