"""Issue 13 item 13: a stage that freezes part of a model never starts from random weights, and each paper recipe
that freezes has a from-scratch variant that trains every layer."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from fer_bench.data import load_dataset
from fer_bench.experiment.plan import RunOptions
from fer_bench.experiment.runner import run_model
from fer_bench.experiment.suite import load_suite
from fer_bench.models import create_model
from fer_bench.recipes import list_recipes, load_recipe
from fer_bench.utils.errors import ConfigError
from helpers import SUITES, fer_bench

FROZEN = ("insideout-effnetv2s", "naik-effnetb2")  # the paper recipes that freeze a pretrained backbone
QUICK = ["data.limit_train=140", "input.img_size=48", "eval.batch_size=512", "eval.tta=[none]"]


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


@pytest.fixture
def weights_file(tmp_path):
    model, _ = create_model("simple_cnn")
    path = tmp_path / "simple_cnn.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("recipe", FROZEN)
def test_a_frozen_stage_without_weights_is_refused_before_any_epoch(tmp_path, synthetic, recipe):
    epochs = []
    opts = RunOptions(out=tmp_path, device="cpu", progress=False)
    with pytest.raises(ConfigError) as exc:
        recipe_ = load_recipe(recipe, [*QUICK, "train.epochs=4"])  # Naik's 3-epoch warm-up needs a 4th epoch
        run_model("simple_cnn", recipe_, synthetic, opts, on_epoch=epochs.append)
    msg = str(exc.value)
    assert "--pretrained" in msg and "--weights" in msg and f"--recipe {recipe}-scratch" in msg
    assert epochs == [] and not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_with_local_weights_the_frozen_recipe_runs_and_says_so(tmp_path, synthetic, weights_file):
    opts = RunOptions(out=tmp_path, device="cpu", progress=False, weights=str(weights_file))
    row = run_model("simple_cnn", load_recipe("insideout-effnetv2s", [*QUICK, "train.epochs=1"]), synthetic, opts)
    assert row["trainable_params"] == 256 * 7 + 7  # only the head trains, on the loaded backbone
    assert row["weights"]["source"] == "file" and row["weights"]["loaded_fraction"] == 1.0
    assert json.loads((tmp_path / row["run_id"] / "result.json").read_text())["weights"] == row["weights"]


def test_a_scratch_row_says_it_started_from_scratch(tmp_path, synthetic):
    opts = RunOptions(out=tmp_path, device="cpu", progress=False)
    recipe = load_recipe("insideout-effnetv2s-scratch", [*QUICK, "train.epochs=1"])
    row = run_model("simple_cnn", recipe, synthetic, opts)
    assert row["weights"]["source"] == "scratch" and row["weights"]["loaded"] == 0
    assert row["trainable_params"] == row["params"]


SUITE = """name: frozen
dataset: synthetic
splits: [public]
models:
  - {{model: simple_cnn, recipe: baseline}}
  - {{model: efficientnetv2_s, recipe: insideout-effnetv2s{extra}}}
"""


def test_a_suite_with_a_frozen_random_cell_is_rejected_at_load(tmp_path):
    path = tmp_path / "frozen.yaml"
    path.write_text(SUITE.format(extra=""))
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    msg = str(exc.value)
    assert str(path) in msg and "models[1]" in msg and "insideout-effnetv2s-scratch" in msg
    path.write_text(SUITE.format(extra=", set: ['input.pretrained=true']"))
    assert len(load_suite(path).models) == 2  # with pretrained weights asked for, the cell is valid


def test_validate_rejects_the_suite_and_run_refuses_before_loading_data(tmp_path):
    path = tmp_path / "frozen.yaml"
    path.write_text(SUITE.format(extra=""))
    res = fer_bench("validate", str(path))
    assert res.returncode == 2 and "insideout-effnetv2s-scratch" in res.stdout, res.stdout + res.stderr
    # a dataset path that does not exist: the frozen check must fire first
    res = fer_bench("run", "--models", "simple_cnn", "--recipe", "naik-effnetb2", "--dataset", "fer2013",
                    "--data-dir", str(tmp_path / "nowhere"), "--no-track", "--out", str(tmp_path / "o"))  # fmt: skip
    assert res.returncode == 2 and "naik-effnetb2-scratch" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("recipe", FROZEN)
def test_each_freezing_recipe_has_a_scratch_variant_that_trains_everything(recipe):
    paper, scratch = load_recipe(recipe), load_recipe(f"{recipe}-scratch")
    assert any("all" not in s.trainable for s in paper.stages)
    assert all(s.trainable == ("all",) for s in scratch.stages) and scratch.name == f"{recipe}-scratch"
    # what else the variant changes is only what its file says: name, version, description, stages, (naik) the LR
    same = {k: v for k, v in asdict(paper).items() if k not in ("name", "version", "description", "stages", "optim")}
    assert same == {k: v for k, v in asdict(scratch).items() if k in same}
    assert paper.optim.name == scratch.optim.name and paper.optim.weight_decay == scratch.optim.weight_decay
    assert "ours" in scratch.description


def test_every_freezing_recipe_names_a_variant_and_the_committed_suites_have_no_frozen_random_cell():
    from fer_bench.experiment.suite import cells
    from fer_bench.recipes.checks import frozen_without_weights

    for name in list_recipes():
        reason = frozen_without_weights(load_recipe(name), has_weights=False)
        assert reason is None or f"--recipe {name}-scratch" in reason
    for path in SUITES:
        for cell in cells(load_suite(path)):
            assert frozen_without_weights(cell.recipe, has_weights=cell.recipe.input.pretrained) is None, cell.id


def test_validate_says_which_recipes_need_weights(capsys):
    """A freezing recipe file is valid (weights come from the command line), and validate says what it needs."""
    from fer_bench.cli import main
    from fer_bench.recipes import RECIPE_DIR

    code = main(["validate", str(RECIPE_DIR / "insideout-effnetv2s.yaml"), str(RECIPE_DIR / "baseline.yaml")])
    out = capsys.readouterr().out
    assert code == 0, out
    (note,) = [line for line in out.splitlines() if "--pretrained" in line]  # one note, for the freezing recipe
    assert "insideout-effnetv2s.yaml" in note and "--weights" in note and "baseline.yaml" not in note
    assert "--recipe insideout-effnetv2s-scratch" in note


def _save(tmp_path, name: str, keep) -> str:
    """A simple_cnn state-dict file holding only the entries for which ``keep(name)`` is true."""
    model, _ = create_model("simple_cnn")
    path = tmp_path / name
    torch.save({k: v for k, v in model.state_dict().items() if keep(k)}, path)
    return str(path)


@pytest.mark.parametrize("recipe", FROZEN)
def test_a_partial_file_that_leaves_frozen_tensors_random_is_refused_even_when_partial_is_allowed(
    tmp_path, synthetic, recipe
):
    """Review of issue 13: --allow-partial-weights with a one-tensor file passed the frozen-random refusal."""
    epochs = []
    one = _save(tmp_path, "one.pt", lambda k: k == "features.0.weight")
    opts = RunOptions(out=tmp_path / "out", device="cpu", progress=False, weights=one, allow_partial_weights=True)
    with pytest.raises(ConfigError) as exc:
        recipe_ = load_recipe(recipe, [*QUICK, "train.epochs=4"])
        run_model("simple_cnn", recipe_, synthetic, opts, on_epoch=epochs.append)
    msg = str(exc.value)
    # 4 conv weights + 4 BN (weight, bias, running mean, running var) frozen under the head stage; one was loaded
    assert "19 frozen" in msg and "features.1.weight" in msg and "features.0.weight," not in msg, msg
    assert "--weights" in msg and "--pretrained" in msg and f"--recipe {recipe}-scratch" in msg
    assert epochs == [] and not (tmp_path / "out").exists()  # refused before anything trained or was written


def test_frozen_batch_norm_statistics_count_but_the_trainable_head_need_not_load(tmp_path, synthetic):
    """A frozen module stays in eval mode: its running statistics must load too; the head trains, so it may be new."""
    recipe = load_recipe("insideout-effnetv2s", [*QUICK, "train.epochs=1"])
    no_stats = _save(tmp_path, "no_stats.pt", lambda k: "running" not in k)
    opts = RunOptions(out=tmp_path / "a", device="cpu", progress=False, weights=no_stats, allow_partial_weights=True)
    with pytest.raises(ConfigError, match="8 frozen"):
        run_model("simple_cnn", recipe, synthetic, opts)
    backbone = _save(tmp_path, "backbone.pt", lambda k: not k.startswith("head."))
    opts = RunOptions(out=tmp_path / "b", device="cpu", progress=False, weights=backbone, allow_partial_weights=True)
    row = run_model("simple_cnn", recipe, synthetic, opts)
    assert row["weights"]["loaded"] == 24 and row["trainable_params"] == 256 * 7 + 7
