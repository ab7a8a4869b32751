"""`fer-bench validate` knows each kind of file (recipe, suite, search space, reference rows) and checks it fully."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_bench.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _validate(capsys, *paths) -> tuple[int, list[str]]:
    code = main(["validate", *map(str, paths)])
    return code, capsys.readouterr().out.splitlines()


def test_the_projects_own_files_validate(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, lines = _validate(capsys, "configs", "benchmarks")
    assert code == 0, "\n".join(lines)
    assert lines[-1].endswith(" valid, 0 invalid")
    checked = {
        "configs/published.yaml": "reference rows", "configs/search/loss-aug.yaml": "search space",
        "configs/recipes/baseline.yaml": "recipe", "benchmarks/fer2013-cpu.yaml": "suite",
    }  # fmt: skip
    for file, kind in checked.items():  # each file is named with the kind it was checked as
        assert f"ok      {kind:<14} {file}" in lines, lines


SPACE = "name: s\nobjective: val_macro_f1\nparams:\n  {param}\n"
ROW = "- {model: resnet18, recipe: x, top1: 70, macro_f1: null, tta: none, pretrained: none, input_size: 48, "
ROW += "epochs: null, trained_on: train, "
BAD_SPACES = {  # case: (the one parameter line, what the message must name)
    "unknown-path": ("loss.class_weight_powr: {type: float, low: 0, high: 1}", "params.loss.class_weight_powr"),
    "low-above-high": ("optim.lr: {type: float, low: 0.1, high: 0.01}", "params.optim.lr: low = 0.1, high = 0.01"),
    "log-from-zero": ("optim.lr: {type: float, low: 0, high: 0.1, log: true}", "0 < low < high"),
    "out-of-range": ("loss.label_smoothing: {type: float, low: 0, high: 1.5}", "loss.label_smoothing = 1.5"),
    "float-on-int": ("train.epochs: {type: float, low: 1, high: 5}", "train.epochs = 1.0 has the wrong type"),
    "bad-index": ("augment.rotate[0]: {type: float, low: 0, high: 5}", "no such list element"),
    "unknown-key": ("optim.lr: {type: float, low: 0.1, high: 1, lo: 2}", "unknown key 'params.optim.lr.lo'"),
    "empty-choices": ("loss.name: {type: categorical, choices: []}", "params.loss.name.choices"),
}
TEST_OBJECTIVE = "objective: test_macro_f1\nparams: {optim.lr: {type: float, low: 0.001, high: 0.01}}"
BROKEN = {  # case: (kind, folder, content, what the message must name)
    **{f"space-{k}": ("search space", "x", SPACE.format(param=p), e) for k, (p, e) in BAD_SPACES.items()},
    "space-test-objective": ("search space", "x", TEST_OBJECTIVE, "objective = 'test_macro_f1'"),
    "space-typo-in-params": ("search space", "search", "name: s\nparms: {}", "unknown key 'parms'"),
    "rows-bad-split": ("reference rows", "x", ROW + "source: s, split: pub}", "[0].split = 'pub'"),
    "rows-no-source": ("reference rows", "x", ROW + "split: public}", "[0] lacks source"),
    "recipe-bad-type": ("recipe", "x", "optim: {lr: abc}", "optim.lr = 'abc'"),
    "suite-unknown-key": ("suite", "x", "name: x\nmodels: [{model: resnet18, sett: []}]", "models[0].sett"),
    "suite-no-name": ("suite", "x", "models: [{model: resnet18}]", "missing key 'name'"),
    "suite-model-no-model": ("suite", "x", "name: x\nmodels: [{recipe: baseline}]", "missing key 'models[0].model'"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_file_of_each_kind_exits_2_with_one_message_naming_it(capsys, tmp_path, case):
    kind, folder, text, expected = BROKEN[case]
    path = tmp_path / folder / f"{case}.yaml"
    path.parent.mkdir()
    path.write_text(text)
    code, lines = _validate(capsys, path)
    assert code == 2
    (invalid,) = [ln for ln in lines if ln.startswith("INVALID")]
    assert f" {kind} " in invalid and str(path) in invalid and expected in invalid, invalid
    assert lines[-1] == "0 valid, 1 invalid"


def test_exponent_notation_in_a_search_space_is_a_number(capsys, tmp_path):
    from fer_bench.experiment.tune_space import read_space

    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(param="optim.lr: {type: float, low: 1e-5, high: 1e-2, log: true}"))
    assert read_space(path)["params"]["optim.lr"]["low"] == 1e-5
    assert _validate(capsys, path)[0] == 0
