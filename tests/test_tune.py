"""`fer-bench tune` on the synthetic set: completes, resumes, prunes, and shares a journal between workers; the
search never reads the test split, and --final-seeds reads it only after the choice, reusing a run only under the
same settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

optuna = pytest.importorskip("optuna")

import fer_bench.data  # noqa: E402
import fer_bench.experiment.runner  # noqa: E402
import fer_bench.experiment.tracking  # noqa: E402
import fer_bench.experiment.tune  # noqa: E402
import fer_bench.utils.errors  # noqa: E402
from fer_bench.experiment.tune import TuneJob, create_study, final_compare, tune  # noqa: E402
from fer_bench.recipes import load_recipe  # noqa: E402

SEARCH = Path(__file__).resolve().parents[1] / "configs" / "search" / "loss-aug.yaml"
FAST = ("train.epochs=2", "data.limit_train=140", "eval.batch_size=512", "train.batch_size=64")


def _job(out: Path, trials: int, **kw) -> TuneJob:
    return TuneJob(SEARCH, "baseline", "simple_cnn", "synthetic", None, FAST, out, None, trials, **kw)


def _study(job: TuneJob):
    return create_study(job, f"loss-aug-{job.model}-{job.base_recipe}")


class _TestRowsWatched(np.ndarray):
    """``data.images`` that reports every batch gather (index array, list or slice) and whether it took a test-split
    row. Batches reach the model only through such gathers; a per-image integer read (hashing the whole set for
    its fingerprint) evaluates nothing and passes unreported."""

    def __getitem__(self, key):
        rows = key[0] if isinstance(key, tuple) else key
        if isinstance(rows, slice | list | np.ndarray):
            self.on_gather(bool(np.asarray(self.test_rows[rows]).any()))
        return np.asarray(super().__getitem__(key))


def _watch_test_rows(monkeypatch, on_test) -> dict[str, int]:
    """Every dataset that tune and final_compare load has watched pixels; ``on_test()`` runs on each gather of test
    rows. Returns the gather counts (``all``, ``test``): a non-zero ``all`` shows the watch saw the training."""
    counts = {"all": 0, "test": 0}
    load = fer_bench.data.load_dataset

    def on_gather(touches_test: bool) -> None:
        counts["all"] += 1
        if touches_test:
            counts["test"] += 1
            on_test()

    def watched(*args, **kw):
        data = load(*args, **kw)
        images = data.images.view(_TestRowsWatched)
        images.test_rows = np.isin(np.arange(len(data)), data.split_indices("test"))
        images.on_gather = on_gather
        return replace(data, images=images)

    monkeypatch.setattr(fer_bench.data, "load_dataset", watched)
    return counts


def _forbidden() -> None:
    raise AssertionError("the test split was read during the search")


def test_study_completes_writes_a_recipe_and_resumes(tmp_path):
    job = _job(tmp_path, 2, track=False)
    result = tune(job)
    assert result["trials"] == 2
    recipe = load_recipe(result["best_recipe"])  # `fer-bench run --recipe` accepts it
    assert recipe.name == "baseline-tuned"
    again = tune(job)
    trials = _study(job).trials
    assert again["trials"] == 4 and [t.number for t in trials] == list(range(4))
    # trial 0 is the base recipe's own values (here all of them lie inside the space); later ones are sampled
    base = load_recipe("baseline", list(FAST))
    assert trials[0].user_attrs == {"base_recipe": True} and not trials[1].user_attrs
    assert trials[0].params["loss.class_weight_power"] == base.loss.class_weight_power == 0.0
    assert trials[0].params["augment.translate"] == base.augment.translate
    assert trials[0].params["optim.lr"] == base.optim.lr and trials[0].params["loss.name"] == base.loss.name


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A one-trial study and its final comparison over seeds 0 and 1: (job, the text, the final runs that trained).

    Tests that go on from it work on a copy (:func:`_copy`), so each sees it as it was made here."""
    job = _job(tmp_path_factory.mktemp("finished"), 1, track=False)
    tune(job)
    with pytest.MonkeyPatch.context() as m:
        trained = _final_trainings(m)
        text = final_compare(job, [0, 1])
    return job, text, trained


def _copy(job: TuneJob, to: Path, *, final: bool = True) -> TuneJob:
    """``job`` moved to a copy of its folder in ``to`` (the study journal, and the final runs when ``final``)."""
    shutil.copytree(job.out, to, dirs_exist_ok=True, ignore=None if final else shutil.ignore_patterns("final*"))
    return replace(job, out=to)


def test_final_compares_best_and_base_on_the_test_split_over_seeds(finished):
    import pandas as pd

    job, text, trained = finished
    assert sorted(trained) == [("baseline", 0, 2), ("baseline", 1, 2), ("baseline-tuned", 0, 2),
                               ("baseline-tuned", 1, 2)]  # fmt: skip
    tmp_path = job.out
    rows = {}
    for f in (tmp_path / "final").rglob("result.json"):
        row = json.loads(f.read_text())
        assert row["split"] == "test" and row["n_train"] == 140 and row["epochs_run"] == 2
        rows[f"{f.parts[-3]}-s{row['seed']}"] = row  # final/<label>/<run folder>/result.json
    assert sorted(rows) == ["base-s0", "base-s1", "tuned-s0", "tuned-s1"]
    assert rows["tuned-s1"]["seed"] == 1 and rows["tuned-s1"]["recipe"] == "baseline-tuned"
    table = pd.read_csv(tmp_path / "final.csv").set_index("recipe")
    v = f" v{rows['tuned-s1']['recipe_version']}"  # the table names each recipe with its version
    assert set(table.index) == {"baseline" + v, "baseline-tuned" + v} and (table["seeds"] == 2).all()
    for recipe, label in (("baseline" + v, "base"), ("baseline-tuned" + v, "tuned")):
        for col in ("macro_f1", "f1_disgust"):
            runs = [rows[f"{label}-s{s}"]["test"][col] for s in (0, 1)]
            assert table.loc[recipe, col] == pytest.approx(sum(runs) / 2, abs=1e-3)
    assert "macro-F1" in text and (tmp_path / "final.md").read_text().startswith(text.splitlines()[0])


def test_search_trials_pruning_and_choice_never_read_the_test_split(tmp_path, monkeypatch):
    counts = _watch_test_rows(monkeypatch, _forbidden)
    job = _job(tmp_path, 2, track=False)
    tune(job)  # two trials, the best-trial choice and best-recipe.yaml
    study = _study(job)
    for _ in range(3):  # three strong finished trials, so the median pruner stops the next one
        study.add_trial(optuna.trial.create_trial(
            params=study.trials[0].params, distributions=study.trials[0].distributions, value=100.0,
            intermediate_values={1: 100.0, 2: 100.0}))  # fmt: skip
    tune(replace(job, trials=1))
    states = [t.state.name for t in _study(job).trials]
    assert states[:2] == ["COMPLETE", "COMPLETE"] and states[-1] == "PRUNED"
    assert counts["all"] > 0 and counts["test"] == 0  # the watch saw every training and validation batch, no test one


def test_final_seeds_read_the_test_split_only_after_the_choice(finished, tmp_path, monkeypatch):
    # the study without its final runs (a search never reads the test split: the test above)
    job = _copy(finished[0], tmp_path, final=False)
    events: list[str] = []
    counts = _watch_test_rows(monkeypatch, lambda: events.append("test"))
    choose = fer_bench.experiment.tune.best_recipe

    def best_recipe(*args):
        recipe = choose(*args)
        events.append("choice")
        return recipe

    monkeypatch.setattr(fer_bench.experiment.tune, "best_recipe", best_recipe)
    n_trials = len(_study(job).trials)
    final_compare(job, [0])
    assert counts["all"] > 0 and events[0] == "choice" and events.count("choice") == 1 and "test" in events
    assert len(_study(job).trials) == n_trials  # the final runs add nothing to the study the choice came from


def _final_trainings(monkeypatch) -> list[tuple[str, int, int]]:
    """(recipe, seed, epochs) of each final run that trains (not read back)."""
    trained: list[tuple[str, int, int]] = []
    run = fer_bench.experiment.runner.run_model

    def counted(model, recipe, *args, **kw):
        trained.append((recipe.name, recipe.train.seed, recipe.train.epochs))
        return run(model, recipe, *args, **kw)

    monkeypatch.setattr(fer_bench.experiment.runner, "run_model", counted)
    return trained


def test_final_reuses_a_finished_run_only_under_the_same_settings(finished, tmp_path, monkeypatch):
    import pandas as pd

    job = _copy(finished[0], tmp_path)  # the first final_compare trained both, seeds 0 and 1 (the test above)
    trained = _final_trainings(monkeypatch)
    final_compare(job, [0])  # same study, same settings: both read back
    assert trained == []
    # A new best trial (another lr): the tuned run must train again; the base run is unchanged and is read back.
    study = _study(job)
    best = study.best_trial
    study.add_trial(optuna.trial.create_trial(params={**best.params, "optim.lr": 0.0004},
                                              distributions=best.distributions, value=best.value + 50))  # fmt: skip
    final_compare(job, [0])
    assert trained == [("baseline-tuned", 0, 2)]
    lrs = {f.parts[-2]: yaml.safe_load(f.read_text())["optim"]["lr"]
           for f in (tmp_path / "final" / "tuned").glob("*-s0-*/recipe.yaml")}  # fmt: skip
    assert sorted(lrs.values()) == sorted([0.0004, best.params["optim.lr"]])  # the old run is kept, not used
    new_dir = next(d for d, lr in lrs.items() if lr == 0.0004)
    new_row = json.loads((tmp_path / "final" / "tuned" / new_dir / "result.json").read_text())
    table = pd.read_csv(tmp_path / "final.csv").set_index("recipe")
    assert table.loc[f"baseline-tuned v{new_row['recipe_version']}", "macro_f1"] == pytest.approx(
        new_row["test"]["macro_f1"], abs=1e-3)  # fmt: skip
    # Other settings (1 epoch instead of 2), newer than every stored result: nothing may be read back.
    trained.clear()
    one_epoch = replace(job, overrides=tuple(o if o != "train.epochs=2" else "train.epochs=1" for o in FAST))
    final_compare(one_epoch, [0])
    assert sorted(trained) == [("baseline", 0, 1), ("baseline-tuned", 0, 1)]


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
    from fer_bench.experiment.tune import run_worker

    run_worker(job, name, 2)
    assert len(create_study(job, name).trials) == 2


def test_tuning_workers_take_the_visible_gpus_in_turn(tmp_path, monkeypatch):
    """Three faked GPUs, four workers: the launcher starts each worker's process with its own device, round-robin
    (no real GPU, no training: the processes are recorded, not started), and a worker's trials train on it."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert fer_bench.experiment.tune.plan_devices(4, None) == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    # --gpus: ids as `run --gpus` takes them
    assert fer_bench.experiment.tune.plan_devices(2, "2,1") == ["cuda:2", "cuda:1"]
    assert fer_bench.experiment.tune.plan_devices(2, None, device="cpu") == ["cpu", "cpu"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")  # the ids this process sees are 4, 6, 7 = its cuda:0, 1, 2
    assert fer_bench.experiment.tune.plan_devices(3, "7,4") == ["cuda:2", "cuda:0", "cuda:2"]
    with pytest.raises(fer_bench.utils.errors.ConfigError, match="not among the visible GPUs"):
        fer_bench.experiment.tune.plan_devices(2, "0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert fer_bench.experiment.tune.plan_devices(2, None) == ["cpu", "cpu"]  # no GPU: the CPU

    started = []

    class Recorded:
        def __init__(self, target, args):
            self.target, self.args = target, args

        def start(self):
            started.append((self.target, self.args[0].device))

        def join(self):
            pass

    ctx = type("Ctx", (), {"Process": Recorded})
    monkeypatch.setattr(fer_bench.experiment.tune.mp, "get_context", lambda method: ctx)
    fer_bench.experiment.tune.launch_workers(_job(tmp_path, 1), "study", 1, ["cuda:0", "cuda:1", "cuda:2", "cuda:0"])
    assert [d for _, d in started] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert all(target is fer_bench.experiment.tune.run_worker for target, _ in started)

    seen = []  # what a worker's objective hands the runner: its own device

    def fake_run_model(model, recipe, data, opts, on_epoch=None):
        seen.append(opts.device)
        return {"history": [{"epoch": 1, "val_macro_f1": 10.0, "val_top1": 20.0}]}

    monkeypatch.setattr(fer_bench.experiment.runner, "run_model", fake_run_model)
    space = fer_bench.experiment.tune.read_space(SEARCH)
    objective = fer_bench.experiment.tune.objective_fn(replace(_job(tmp_path, 1), device="cuda:2"), space, None,
                                            fer_bench.experiment.tracking.NullTracker())  # fmt: skip
    assert objective(optuna.create_study(direction="maximize").ask()) == 10.0 and seen == ["cuda:2"]
