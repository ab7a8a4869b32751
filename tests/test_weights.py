"""Issue 13 item 10: starting weights are on every row (source, file, sha256, fraction loaded), a file that fills
too little of the backbone is an error unless asked for, TF32 is recorded, and a missing recipe is an error."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from fer_bench.models import create_model, get_spec
from fer_bench.utils.errors import ConfigError
from helpers import fer_bench

SIMPLE_CNN_TENSORS = 26  # simple_cnn's state dict: 4 × (conv weight + 5 BN entries) + head weight and bias
SIMPLE_CNN_HEAD = 2


def weights_info(model) -> dict:
    from fer_bench.models import weights_info  # new API: imported here so the other tests also run on older code

    return weights_info(model)


@pytest.fixture
def full_file(tmp_path):
    model, _ = create_model("simple_cnn")
    path = tmp_path / "simple_cnn.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def one_tensor_file(tmp_path):
    model, _ = create_model("simple_cnn")
    path = tmp_path / "one.pt"
    torch.save({"features.0.weight": model.state_dict()["features.0.weight"]}, path)
    return path


def test_a_full_state_dict_loads_all_tensors_and_names_its_file_and_digest(full_file):
    model, _ = create_model("simple_cnn", weights=full_file)
    info = weights_info(model)
    assert info["source"] == "file" and info["path"] == str(full_file.resolve())
    assert info["sha256"] == hashlib.sha256(full_file.read_bytes()).hexdigest()
    assert (info["loaded"], info["total"], info["loaded_fraction"]) == (SIMPLE_CNN_TENSORS, SIMPLE_CNN_TENSORS, 1.0)
    saved = torch.load(full_file, weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_a_1000_class_head_does_not_count_against_the_load(tmp_path):
    imagenet, _ = create_model("simple_cnn", num_classes=1000)
    torch.save(imagenet.state_dict(), tmp_path / "in1k.pt")
    model, _ = create_model("simple_cnn", num_classes=7, weights=tmp_path / "in1k.pt")
    info = weights_info(model)
    assert info["loaded"] == SIMPLE_CNN_TENSORS - SIMPLE_CNN_HEAD and info["total"] == SIMPLE_CNN_TENSORS


def test_a_file_with_one_matching_tensor_is_an_error_naming_what_is_missing(one_tensor_file):
    with pytest.raises(ConfigError) as exc:
        create_model("simple_cnn", weights=one_tensor_file)
    msg = str(exc.value)
    backbone = SIMPLE_CNN_TENSORS - SIMPLE_CNN_HEAD
    assert f"1 of the model's {backbone} backbone tensors" in msg and "features.1.weight" in msg
    assert "--allow-partial-weights" in msg


def test_a_partial_load_when_asked_for_reports_its_fraction(one_tensor_file):
    model, _ = create_model("simple_cnn", weights=one_tensor_file, allow_partial=True)
    info = weights_info(model)
    assert (info["loaded"], info["total"]) == (1, SIMPLE_CNN_TENSORS)
    assert info["loaded_fraction"] == round(1 / SIMPLE_CNN_TENSORS, 4)


def test_scratch_is_recorded_as_such():
    model, _ = create_model("simple_cnn")
    assert weights_info(model) == {"source": "scratch", "path": None, "sha256": None, "loaded": 0,
                                   "total": SIMPLE_CNN_TENSORS, "loaded_fraction": 0.0}  # fmt: skip


def test_pretrained_names_timms_tag_and_the_cached_file(tmp_path, monkeypatch):
    """A Hugging Face cache made here (no network) holds the "pretrained" file; its tag and digest are recorded."""
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    donor = timm.create_model("mobilenetv3_small_050")
    snap = tmp_path / "models--timm--mobilenetv3_small_050.lamb_in1k" / "snapshots" / "r1"
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("r1")
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(snap / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    model, _ = create_model("timm:mobilenetv3_small_050", num_classes=7, pretrained=True)
    info = weights_info(model)
    assert info["source"] == "timm:mobilenetv3_small_050.lamb_in1k"
    assert info["sha256"] == hashlib.sha256((snap / "model.safetensors").read_bytes()).hexdigest()
    assert info["loaded"] == info["total"] - 2  # all but the new 7-class head
    assert torch.equal(model.state_dict()["conv_stem.weight"], donor.state_dict()["conv_stem.weight"])


def test_the_cli_refuses_a_partial_file_and_records_one_it_was_told_to_accept(tmp_path, one_tensor_file):
    args = ["run", "--models", "simple_cnn", "--epochs", "1", "--limit-train", "140", "--no-progress", "--no-track",
            "--set", "eval.tta=[none]", "--weights", str(one_tensor_file)]  # fmt: skip
    res = fer_bench(*args, "--out", str(tmp_path / "a"))
    assert res.returncode == 2 and "backbone tensors" in res.stderr and "Traceback" not in res.stderr
    res = fer_bench(*args, "--allow-partial-weights", "--out", str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr[-2000:]
    (row_file,) = (tmp_path / "b").rglob("result.json")
    row = json.loads(row_file.read_text())
    assert row["weights"]["source"] == "file" and row["weights"]["path"] == str(one_tensor_file.resolve())
    assert row["weights"]["loaded_fraction"] == round(1 / SIMPLE_CNN_TENSORS, 4)
    assert row["tf32"] == {"matmul": False, "cudnn": False}  # a CPU run


def test_tf32_is_read_from_torch_on_an_ampere_or_newer_gpu(monkeypatch):
    from fer_bench.utils.provenance import tf32

    assert tf32(torch.device("cpu")) == {"matmul": False, "cudnn": False}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    cuda, conv, matmul = torch.device("cuda"), torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    try:  # torch's backend flags are not plain attributes: set and restore them by hand
        conv.fp32_precision, matmul.fp32_precision = "tf32", "ieee"
        assert tf32(cuda) == {"matmul": False, "cudnn": True}  # torch's defaults: TF32 convolutions, IEEE matmuls
        conv.fp32_precision, matmul.fp32_precision = "ieee", "tf32"
        assert tf32(cuda) == {"matmul": True, "cudnn": False}
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # a V100 has no TF32
    assert tf32(cuda) == {"matmul": False, "cudnn": False}


def test_a_missing_default_recipe_is_an_error_not_the_schema_defaults(tmp_path, monkeypatch):
    """An install without the recipe files used to run under load_recipe(None), named "baseline"."""
    import fer_bench.recipes as recipes
    from fer_bench import cli

    monkeypatch.setattr(recipes, "RECIPE_DIR", tmp_path)  # an empty recipe folder
    with pytest.raises(ConfigError, match="default recipe 'baseline'"):
        recipes.default_recipe(get_spec("resnet18"))
    code = cli.main(["run", "--models", "simple_cnn", "--epochs", "1", "--no-track", "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()


def _hub_cache_with(root, repo: str, content: bytes):
    """A Hugging Face cache layout (refs/main → snapshot) under ``root`` holding ``model.safetensors``."""
    snap = root / f"models--{repo.replace('/', '--')}" / "snapshots" / "r1"
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("r1")
    (snap / "model.safetensors").write_bytes(content)
    return snap / "model.safetensors"


def test_pretrained_weights_enter_the_protocol_by_tag_and_cached_digest(tmp_path, monkeypatch):
    """Review of issue 13: two caches holding other bytes under one model name are two protocols, told apart
    before anything is loaded (the model is never built here)."""
    import huggingface_hub.constants

    from fer_bench.experiment.protocol import weights_identity

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    idents = []
    for name, content in (("a", b"weights one"), ("b", b"weights one"), ("c", b"weights two")):
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / name))
        file = _hub_cache_with(tmp_path / name, "timm/mobilenetv3_small_050.lamb_in1k", content)
        idents.append(weights_identity(None, True, "timm:mobilenetv3_small_050"))
        assert idents[-1]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert idents[0]["tag"] == "mobilenetv3_small_050.lamb_in1k" and idents[0]["source"] == "timm-pretrained"
    assert idents[0] == idents[1] != idents[2]  # the bytes count, not where the cache lives

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    assert weights_identity(None, True, "timm:mobilenetv3_small_050")["sha256"] is None  # not cached yet
    tags = {weights_identity(None, True, m)["tag"] for m in ("timm:resnet18.a1_in1k", "timm:resnet18.tv_in1k")}
    assert tags == {"resnet18.a1_in1k", "resnet18.tv_in1k"}  # one architecture, two pretrained weights
