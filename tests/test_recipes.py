from __future__ import annotations

from pathlib import Path

import pytest

from fer_bench.recipes import load_recipe, recipe_hash
from fer_bench.utils.errors import ConfigError

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


def test_exponent_notation_parses_to_the_schema_type(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-5 as the string "1e-5"; the schema says float, so it is the float 1e-05.
    r = load_recipe(None, ["optim.weight_decay=1e-4", "optim.lr=1e-5"])
    assert (r.optim.weight_decay, r.optim.lr) == (1e-4, 1e-5)
    assert type(r.optim.weight_decay) is float and type(r.optim.lr) is float
    text = "optim: {lr: 1e-5, weight_decay: 5E-2}\naugment: {crop_scale: [5e-1, 1]}\ntrain: {epochs: 3}\n"
    path = _write(tmp_path, text)
    r = load_recipe(path)
    assert (r.optim.lr, r.optim.weight_decay, r.augment.crop_scale, r.train.epochs) == (1e-5, 0.05, (0.5, 1.0), 3)
    r = load_recipe(None, ["train.epochs=3", "optim.lr=.5E+2"])
    assert (r.train.epochs, r.optim.lr) == (3, 50.0) and type(r.train.epochs) is int


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('train: {epochs: "3"}', "train.epochs = '3' has the wrong type; expected an integer"),
        ('optim: {lr: "0.5"}', "optim.lr = '0.5' has the wrong type; expected a number"),
        ('optim: {lr: "1.0e-5"}', "optim.lr = '1.0e-5' has the wrong type; expected a number"),  # YAML 1.1 float
        ('optim: {lr: " 1e-5"}', "optim.lr = ' 1e-5' has the wrong type; expected a number"),
    ],
)
def test_a_quoted_number_in_a_file_is_still_a_type_error(tmp_path, text, expected):
    # only YAML 1.1's misreading (an exponent float without a dot, left as text) is corrected; a quoted number is text
    with pytest.raises(ConfigError) as err:
        load_recipe(_write(tmp_path, text + "\n"))
    assert expected in str(err.value)


def test_run_flags_in_exponent_notation_build_the_recipe():
    from fer_bench.cli import build_parser, recipe_from_args
    from fer_bench.models import get_spec

    args = build_parser().parse_args(["run", "--models", "simple_cnn", "--lr", "1e-5",
                                      "--set", "optim.weight_decay=1e-4"])  # fmt: skip
    r = recipe_from_args(args, get_spec("simple_cnn"))  # --lr becomes the --set string "optim.lr=1e-05"
    assert (r.optim.lr, r.optim.weight_decay) == (1e-5, 1e-4)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("optim.lr=abc", "optim.lr = 'abc' has the wrong type; expected a number"),
        ("optim.lr=1e-5x", "optim.lr = '1e-5x' has the wrong type; expected a number"),
        ("optim.lr=nan", "optim.lr = 'nan' has the wrong type; expected a number"),
        ("train.epochs=1e3", "train.epochs = '1e3' has the wrong type; expected an integer"),
        ("train.epochs=2.5", "train.epochs = 2.5 has the wrong type; expected an integer"),
    ],
)
def test_text_that_is_no_number_of_the_type_is_still_a_type_error(item, expected):
    with pytest.raises(ConfigError) as err:
        load_recipe(None, [item])
    assert expected in str(err.value)
