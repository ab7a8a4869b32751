from __future__ import annotations

import pytest
import torch

from fer_bench.models import MODELS, create_model, get_spec
from fer_bench.utils.errors import ConfigError
from fer_bench.utils.registry import Registry


def test_duplicate_registration_is_an_error():
    reg = Registry[int]("thing", list_hint="fer-bench ls things")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 2)


def test_unknown_name_suggests_close_matches_and_how_to_list():
    with pytest.raises(ConfigError) as exc:
        get_spec("resnet81")
    msg = str(exc.value)
    assert "resnet18" in msg and "fer-bench ls models" in msg


def test_timm_architecture_without_prefix_says_how_to_use_it():
    with pytest.raises(ConfigError, match="timm:mobilenetv3_small_050"):
        get_spec("mobilenetv3_small_050")


def test_any_timm_model_by_name():
    model, spec = create_model("timm:mobilenetv3_small_050", num_classes=7)
    assert spec.source == "timm" and spec.input_size == 224
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_unknown_timm_model():
    with pytest.raises(ConfigError, match="unknown timm model"):
        get_spec("timm:resnet_does_not_exist")


def test_list_with_pattern():
    assert MODELS.names("resnet*") == ["resnet18", "resnet34", "resnet50"]


@pytest.mark.parametrize("name", MODELS.names())
def test_every_backbone_builds_runs_and_matches_declared_params(name):
    torch.manual_seed(0)
    model, spec = create_model(name, num_classes=7)
    assert sum(p.numel() for p in model.parameters()) == spec.params
    x = torch.randn(2, spec.in_chans, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_backbone_has_metadata(name):
    spec = MODELS.get(name)
    assert spec.source in ("timm", "torchvision", "ours")
    assert spec.in_chans in (1, 3) and len(spec.mean) in (1, 3) and len(spec.std) == len(spec.mean)
    assert spec.input_size >= 32 and spec.paper and spec.family


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).source == "timm"])
def test_timm_entries_match_timms_own_metadata(name):
    import timm

    spec = MODELS.get(name)
    cfg = timm.get_pretrained_cfg(spec.timm_name)
    assert spec.input_size == cfg.input_size[-1]
    assert spec.mean == tuple(cfg.mean) and spec.std == tuple(cfg.std)


@pytest.mark.parametrize("name", MODELS.names())
def test_default_recipe_exists(name):
    from fer_bench.recipes import list_recipes

    assert MODELS.get(name).default_recipe in list_recipes()
