from __future__ import annotations

from pathlib import Path

import pytest

from fer_bench.errors import ConfigError
from fer_bench.recipes import RECIPE_DIR, load_recipe, recipe_hash

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("recipes/*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(str(path))
    assert recipe.name == path.stem, "a recipe's name must match its file name"


def test_precedence_cli_over_yaml_over_defaults(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("optim: {lr: 0.01, weight_decay: 0.0}\ntrain: {epochs: 5}\n")
    child = tmp_path / "child.yaml"
    child.write_text("include: base.yaml\nname: child\noptim: {lr: 0.02}\n")
    r = load_recipe(str(child), ["train.epochs=7"])
    assert (r.name, r.optim.lr, r.optim.weight_decay, r.train.epochs) == ("child", 0.02, 0.0, 7)
    assert r.train.batch_size == 64  # untouched: the schema default


def test_hash_changes_with_any_value_and_only_then():
    a, b = load_recipe(None, ["optim.lr=0.01"]), load_recipe(None, ["optim.lr=0.01"])
    assert recipe_hash(a) == recipe_hash(b) != recipe_hash(load_recipe(None, ["optim.lr=0.02"]))


def _write(tmp_path, text: str, name: str = "r.yaml") -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("optim: {lrr: 0.1}", ["unknown key 'optim.lrr'", "Did you mean 'optim.lr'"]),
        ("optimizer: {lr: 0.1}", ["unknown key 'optimizer'", "Did you mean 'optim'"]),
        ("train: {epochs: ten}", ["train.epochs = 'ten'", "expected an integer"]),
        ("augment: {crop_scale: 0.5}", ["augment.crop_scale", "expected a list of 2 numbers"]),
        ("optim: {lr: -0.1}", ["optim.lr = -0.1", "a number > 0"]),
        ("loss: {label_smoothing: 1.0}", ["loss.label_smoothing", "[0, 1)"]),
        ("loss: {name: hinge}", ["loss.name = 'hinge'", "one of ce, focal"]),
        ("train: {epochs: 2}\nschedule: {warmup_epochs: 2}", ["schedule.warmup_epochs", "[0, train.epochs)"]),
        ("eval: {tta: [none, fivecrop]}", ["eval.tta", "none, hflip, tencrop"]),
        ("- a\n- b", ["must be a mapping"]),
        ("optim: {lr: [0.1", ["not valid YAML"]),
    ],
)
def test_broken_recipes_name_file_path_and_fix(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_recipe(path)
    msg = str(exc.value)
    assert path in msg
    for part in expected:
        assert part in msg


def test_include_cycle_is_an_error(tmp_path):
    _write(tmp_path, "include: b.yaml\n", "a.yaml")
    _write(tmp_path, "include: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="include cycle"):
        load_recipe(str(tmp_path / "a.yaml"))


def test_unknown_recipe_name_suggests_and_lists():
    with pytest.raises(ConfigError, match="Did you mean 'baseline'.*fer-bench ls recipes"):
        load_recipe("baselin")


def test_no_code_in_yaml(tmp_path):
    path = _write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(path)

