"""A run is resolved once into a frozen plan that the trainer, the test pass and the row read; its row follows the
typed schema of experiment/row.py."""

from __future__ import annotations

import dataclasses

import pytest

import fer_bench
from fer_bench.data import load_dataset
from fer_bench.experiment import plan as plan_module
from fer_bench.experiment.plan import RunOptions, resolve_plan
from fer_bench.experiment.runner import run_model
from fer_bench.recipes import load_recipe
from helpers import schema_mismatches

TINY = ["train.epochs=3", "data.limit_train=96", "train.batch_size=32"]


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


def _counting(monkeypatch, module, name: str) -> list[int]:
    calls = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    spy.__wrapped__ = real
    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize("entry", ["run_model", "fer_bench.run"])
def test_a_run_computes_each_identity_hash_once(tmp_path, monkeypatch, data, entry):
    """Counted where they are defined (every module's call goes through the defining module's function), through the
    runner and through the Python API (which loads the recipe and data and resolves the plan itself)."""
    from fer_bench import recipes
    from fer_bench.experiment import protocol
    from fer_bench.recipes import schema

    recipe = load_recipe("baseline", TINY)  # read before counting: reading validates the recipe's stages
    counts = {n: _counting(monkeypatch, plan_module, n) for n in ("device_context",)}
    names = [(recipes, ("recipe_hash",)), (protocol, ("protocol_hash", "data_fingerprint"))]
    if entry == "run_model":  # fer_bench.run reads the recipe inside the count: its validation plans the stages too
        names.append((schema, ("stage_plan",)))
    for module, fns in names:
        for n in fns:
            spy = _counting(monkeypatch, module, n)
            counts[n] = spy
            for user in _importers(n, module):  # the modules that imported the name bind it themselves
                monkeypatch.setattr(user, n, getattr(module, n))
    if entry == "run_model":
        row = run_model("simple_cnn", recipe, data, RunOptions(out=tmp_path, progress=False))
    else:
        (row,) = fer_bench.run(["simple_cnn"], recipe="baseline", sets=TINY, out=tmp_path, progress=False)
    assert row["epochs_run"] == 3
    assert {n: len(c) for n, c in counts.items()} == dict.fromkeys(counts, 1)


def _importers(name: str, module) -> list:
    """The loaded fer_bench modules that bound ``name`` from ``module`` (``from module import name``)."""
    import sys

    real = getattr(module, name).__wrapped__
    return [m for k, m in list(sys.modules.items()) if k.startswith("fer_bench") and m is not module
            and getattr(m, name, None) is real]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """One tiny run: (its out folder, its row)."""
    out = tmp_path_factory.mktemp("runs")
    return out, run_model("simple_cnn", load_recipe("baseline", TINY), data, RunOptions(out=out, progress=False))


def test_the_row_carries_the_plans_identity(trained, data):
    out, row = trained
    plan = resolve_plan("simple_cnn", load_recipe("baseline", TINY), data, RunOptions(out=out, progress=False))
    assert (row["protocol_hash"], row["run_id"], row["recipe_hash"]) == (plan.protocol_hash, plan.run_id,
                                                                         plan.recipe_hash)  # fmt: skip
    assert (row["img_size"], row["precision"], row["n_test"]) == (plan.size, plan.precision, len(plan.proto.test))
    assert (out / plan.run_id / "result.json").is_file()


def test_a_plan_is_frozen(tmp_path, data):
    plan = resolve_plan("simple_cnn", load_recipe("baseline", TINY), data, RunOptions(out=tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.size = 96


def test_a_training_rows_fields_are_the_schemas_with_their_types(trained):
    assert schema_mismatches(trained[1]) == {}


def test_an_evaluation_follows_the_schema_and_hashes_its_data_and_names_its_folder_once(trained, tmp_path,
                                                                                        monkeypatch):  # fmt: skip
    """``fer_bench.evaluate`` of a run (with a corruption) and of a bare weights file: each row follows the schema;
    each evaluation computes one data fingerprint and one eval id."""
    from fer_bench.experiment import protocol

    out, row = trained
    counts = {}
    for n in ("data_fingerprint", "run_name"):
        counts[n] = _counting(monkeypatch, protocol, n)
        for user in _importers(n, protocol):
            monkeypatch.setattr(user, n, getattr(protocol, n))
    run_dir = out / row["run_id"]
    rescored = fer_bench.evaluate(run_dir, split="private", out=tmp_path / "eval", corruptions="gaussian_noise",
                                  severities="1")  # fmt: skip
    assert {n: len(c) for n, c in counts.items()} == {"data_fingerprint": 1, "run_name": 1}
    for c in counts.values():
        c.clear()
    bare = fer_bench.evaluate(weights=run_dir / "best.pt", model="simple_cnn", out=tmp_path / "bare")
    assert {n: len(c) for n, c in counts.items()} == {"data_fingerprint": 1, "run_name": 1}
    assert schema_mismatches(rescored) == {} and schema_mismatches(bare) == {}
    assert rescored["corruptions"] and rescored["trained_run_id"] == row["run_id"] and bare["seed"] is None


def test_the_schema_check_can_fail():
    assert schema_mismatches({"seed": "3", "new_field": 1}) == {"seed": "str", "new_field": "not in the schema"}
    assert schema_mismatches({"test": {}, "seed": None, "train_e2e_img_s": 3}) == {}
