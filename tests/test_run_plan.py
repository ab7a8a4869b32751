"""A run is resolved once into a frozen plan that the trainer, the test pass and the row read; its row follows the
typed schema of experiment/row.py."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest

from fer_bench.data import load_dataset
from fer_bench.experiment import plan as plan_module
from fer_bench.experiment.plan import RunOptions, resolve_plan
from fer_bench.experiment.row import ResultRow
from fer_bench.experiment.runner import run_model
from fer_bench.recipes import load_recipe

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

    monkeypatch.setattr(module, name, spy)
    return calls


def test_a_run_computes_each_identity_hash_once(tmp_path, monkeypatch, data):
    counts = {n: _counting(monkeypatch, plan_module, n)
              for n in ("recipe_hash", "protocol_hash", "data_fingerprint", "device_context")}  # fmt: skip
    row = run_model("simple_cnn", load_recipe("baseline", TINY), data, RunOptions(out=tmp_path, progress=False))
    assert row["epochs_run"] == 3
    assert {n: len(c) for n, c in counts.items()} == dict.fromkeys(counts, 1)


def test_the_row_carries_the_plans_identity(tmp_path, data):
    recipe, opts = load_recipe("baseline", TINY), RunOptions(out=tmp_path, progress=False)
    plan = resolve_plan("simple_cnn", recipe, data, opts)
    row = run_model("simple_cnn", recipe, data, opts)
    assert (row["protocol_hash"], row["run_id"], row["recipe_hash"]) == (plan.protocol_hash, plan.run_id,
                                                                         plan.recipe_hash)  # fmt: skip
    assert (row["img_size"], row["precision"], row["n_test"]) == (plan.size, plan.precision, len(plan.proto.test))
    assert (tmp_path / plan.run_id / "result.json").is_file()


def test_a_plan_is_frozen(tmp_path, data):
    plan = resolve_plan("simple_cnn", load_recipe("baseline", TINY), data, RunOptions(out=tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.size = 96


def _conforms(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, dict):
        return isinstance(value, origin)
    return isinstance(value, hint)


def test_a_rows_fields_are_the_schemas_with_their_types(tmp_path, data):
    row = run_model("simple_cnn", load_recipe("baseline", TINY), data, RunOptions(out=tmp_path, progress=False))
    hints = typing.get_type_hints(ResultRow)
    assert set(row) <= set(hints), f"fields outside the schema: {sorted(set(row) - set(hints))}"
    wrong = {k: type(v).__name__ for k, v in row.items() if not _conforms(v, hints[k])}
    assert not wrong, f"fields of another type than the schema says: {wrong}"


def test_the_schema_check_can_fail():
    assert not _conforms("3", int) and not _conforms(None, float) and not _conforms(True, float)
    assert _conforms(None, float | None) and _conforms(3, float) and _conforms([1], list[int])
