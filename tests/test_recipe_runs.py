"""The published recipes run end to end (on simple_cnn and the synthetic set, so it takes seconds)."""

from __future__ import annotations

import pytest

from fer_bench.data import load_dataset
from fer_bench.experiment.plan import RunOptions
from fer_bench.experiment.runner import run_model
from fer_bench.recipes import load_recipe


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> str:
    """Starting weights for recipes that freeze the backbone (a frozen random one is refused, issue 13)."""
    import torch

    from fer_bench.models import create_model

    path = tmp_path_factory.mktemp("weights") / "simple_cnn.pt"
    torch.save(create_model("simple_cnn")[0].state_dict(), path)
    return str(path)


def _run(tmp_path, data, recipe: str, *sets: str, model: str = "simple_cnn", weights: str | None = None) -> dict:
    r = load_recipe(recipe, ["data.limit_train=280", "input.img_size=48", "eval.batch_size=512", *sets])
    return run_model(model, r, data, RunOptions(out=tmp_path, device="cpu", progress=False, weights=weights))


def test_naik_two_stages_show_in_the_history(tmp_path, synthetic, backbone):
    row = _run(tmp_path, synthetic, "naik-effnetb2", "train.epochs=4", weights=backbone)
    assert [h["stage"] for h in row["history"]] == ["warmup"] * 3 + ["finetune"]
    lrs = [h["lr"] for h in row["history"]]
    assert lrs[0] > 1e-4 >= lrs[3]  # the fine-tuning stage runs at its own, lower LR (cosine within each stage)
    assert row["trainable_params"] == row["params"]  # the last stage trains everything
    assert row["n_val"] == round(len(synthetic.split_indices("train")) * 0.125)


def test_insideout_freezes_the_backbone(tmp_path, synthetic, backbone):
    row = _run(tmp_path, synthetic, "insideout-effnetv2s", "train.epochs=1", weights=backbone)
    assert row["trainable_params"] == 256 * 7 + 7 < row["params"]  # only the linear head of simple_cnn
    assert row["recipe"] == "insideout-effnetv2s" and len(row["recipe_hash"]) == 12


def test_khaireddin_ten_crops_private_validation_public_test(tmp_path, synthetic):
    row = _run(tmp_path, synthetic, "khaireddin-vgg", "train.epochs=1", "input.img_size=40")
    assert row["split"] == "public" and row["n_test"] == len(synthetic.split_indices("public"))
    assert row["n_val"] == len(synthetic.split_indices("private"))
    assert set(row["test_tta"]) == {"tencrop", "none"}
    assert row["img_size"] == 40
    assert row["test_tta_gmacs"]["tencrop"] == pytest.approx(10 * row["gmacs"], rel=1e-3)  # ten crops, ten passes


@pytest.mark.parametrize("tta", [["tencrop", "none"], ["hflip"]])  # a TTA listed first; "none" not listed at all
def test_the_headline_is_always_the_plain_single_crop_figure(tmp_path, synthetic, tta):
    """Whatever eval.tta lists, and in whatever order, row["test"] is the plain figure; TTA sits beside it."""
    row = _run(tmp_path, synthetic, "baseline", "train.epochs=1", f"eval.tta={tta}")
    assert row["test"]["top1"] == row["test_tta"]["none"]["top1"]
    assert row["test"]["macro_f1"] == row["test_tta"]["none"]["macro_f1"]
    assert set(row["test_tta"]) == {"none", *tta}
    assert list(row["test_tta"])[0] == "none"


def test_a_trainable_glob_that_matches_nothing_is_an_error(tmp_path, synthetic, backbone):
    from fer_bench.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="matches no parameter"):
        _run(
            tmp_path,
            synthetic,
            "baseline",
            "train.epochs=1",
            "stages=[{name: x, trainable: ['blokcs.*']}]",
            weights=backbone,
        )
