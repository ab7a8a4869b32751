"""The corruption suite: each corruption keeps shape, dtype and device, is deterministic under its seed, and grows
with its severity; the stated parameters are the ones applied."""

from __future__ import annotations

import pytest
import torch

from fer_bench.corruptions import (
    CORRUPTIONS,
    EYES_BOX,
    MOUTH_BOX,
    SEVERITIES,
    batch_generator,
    corrupt,
    parse_corruptions,
    parse_severities,
)
from fer_bench.data.synthetic import make_synthetic
from fer_bench.errors import ConfigError

NAMES = CORRUPTIONS.names()


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    images, _, _ = make_synthetic(n_train=48, n_public=0, n_private=0, seed=3)
    return torch.from_numpy(images)


def test_the_suite_has_the_ten_corruptions_with_five_severities_each():
    assert NAMES == ["brightness", "contrast", "gaussian_blur", "gaussian_noise", "jpeg", "motion_blur",
                     "occlusion_eyes", "occlusion_mouth", "occlusion_patches", "pixelate"]  # fmt: skip
    assert all(len(CORRUPTIONS.get(n).params) == len(SEVERITIES) == 5 for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rgb", [False, True])
def test_shape_dtype_device_and_range_are_kept(faces, name, rgb):
    x = torch.stack([faces[:8]] * 3, -1) if rgb else faces[:8]  # (B,H,W,3) as the store keeps RGB, or grey
    for s in SEVERITIES:
        out = corrupt(x, name, s, seed=0)
        assert out.shape == x.shape and out.dtype == torch.uint8 and out.device == x.device
        assert not torch.equal(out, x), f"{name} {s} changed nothing"
    if rgb and name != "gaussian_noise":  # grey content stays grey (noise alone is drawn per channel)
        out = corrupt(x, name, 3, seed=0)
        assert torch.equal(out[..., 0], out[..., 1]) and torch.equal(out[..., 1], out[..., 2])


@pytest.mark.parametrize("name", NAMES)
def test_values_beyond_the_range_saturate_instead_of_wrapping(faces, name):
    """uint8 cannot leave [0, 255], so the range is kept only if values the corruption pushes past it are clipped
    (a bare cast wraps 256 to 0 and −1 to 255): on black, white and real faces the output equals the float result,
    rounded and clipped; the suite's additive corruptions do push past the range on those images."""
    spec = CORRUPTIONS.get(name)
    white, black = torch.full((4, 48, 48), 255, dtype=torch.uint8), torch.zeros(4, 48, 48, dtype=torch.uint8)
    beyond = False
    for x in (white, black, faces[:8]):
        for s in SEVERITIES:
            gen = batch_generator(0, name, s, 0, x.device) if spec.random else None
            ref = spec.fn(x.float().unsqueeze(1), spec.params[s - 1], gen).squeeze(1)
            beyond |= bool((ref < -0.5).any() or (ref > 255.5).any())
            assert torch.equal(corrupt(x, name, s, seed=0), ref.round().clamp(0, 255).to(torch.uint8)), (name, s)
    if name in ("gaussian_noise", "brightness"):
        assert beyond, f"{name} never left [0, 255]: the clipping went untested"


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_its_seed(faces, name):
    a = corrupt(faces, name, 3, seed=7, batch=2)
    assert torch.equal(a, corrupt(faces, name, 3, seed=7, batch=2))
    if CORRUPTIONS.get(name).random:  # another seed, or another batch index, draws differently
        assert not torch.equal(a, corrupt(faces, name, 3, seed=8, batch=2))
        assert not torch.equal(a, corrupt(faces, name, 3, seed=7, batch=3))
    else:
        assert torch.equal(a, corrupt(faces, name, 3, seed=8, batch=5))


@pytest.mark.parametrize("name", NAMES)
def test_severity_is_monotone_in_the_distance_from_the_clean_image(faces, name):
    clean = faces.float()
    dist = [(corrupt(faces, name, s, seed=0).float() - clean).abs().mean().item() for s in SEVERITIES]
    assert all(a < b for a, b in zip(dist, dist[1:], strict=False)), dist


def test_the_stated_parameters_are_applied():
    grey = torch.full((4, 48, 48), 128, dtype=torch.uint8)
    # brightness 3: +0.3 of 255 → 204.5, rounded half to even
    assert torch.equal(corrupt(grey, "brightness", 3), torch.full_like(grey, 204))
    # gaussian noise 1: σ = 20.4 grey levels (no clipping reached from 128 at this σ... rarely; ±3 %)
    noise = corrupt(grey, "gaussian_noise", 1, seed=0).float() - 128
    assert noise.std().item() == pytest.approx(20.4, rel=0.03) and abs(noise.mean().item()) < 0.5
    ramp = torch.arange(48, dtype=torch.uint8).repeat(1, 48, 1) * 4  # columns 0, 4, …, 188
    # contrast 5: (x − mean)·0.05 + mean
    expected = ((ramp.float() - ramp.float().mean()) * 0.05 + ramp.float().mean()).round().to(torch.uint8)
    assert torch.equal(corrupt(ramp, "contrast", 5), expected)
    # pixelate 3: 4-px blocks hold their mean
    out = corrupt(ramp, "pixelate", 3)
    assert torch.equal(out[0, :, :4], torch.full((48, 4), 6, dtype=torch.uint8))  # mean of 0, 4, 8, 12


@pytest.mark.parametrize("name, box", [("occlusion_eyes", EYES_BOX), ("occlusion_mouth", MOUTH_BOX)])
def test_face_boxes_cover_the_stated_fractions_at_severity_5(name, box):
    white = torch.full((1, 48, 48), 255, dtype=torch.uint8)
    black = corrupt(white, name, 5)[0] == 0
    x0, y0, x1, y1 = (round(f * 48) for f in box)
    expected = torch.zeros(48, 48, dtype=torch.bool)
    expected[y0:y1, x0:x1] = True
    assert torch.equal(black, expected)
    half = corrupt(white, name, 1)[0] == 0  # severity 1: half the width and height, same centre
    assert half.sum() < black.sum() and (half & ~black).sum() == 0


def test_option_parsing_and_its_errors():
    assert parse_corruptions("all") == tuple(NAMES)
    assert parse_corruptions("jpeg, gaussian_noise") == ("jpeg", "gaussian_noise")
    assert parse_severities("1,3,5") == (1, 3, 5)
    with pytest.raises(ConfigError, match="unknown corruption 'gausian_noise'.*gaussian_noise"):
        parse_corruptions("gausian_noise")
    for bad in ("0,1", "1,1", "x", ""):
        with pytest.raises(ConfigError, match="--severities"):
            parse_severities(bad)
    with pytest.raises(ConfigError, match="severity 6"):
        corrupt(torch.zeros(1, 8, 8, dtype=torch.uint8), "jpeg", 6)


def test_ls_corruptions_lists_the_registry_with_its_parameters(capsys):
    from fer_bench.cli import main

    assert main(["ls", "corruptions", "--long"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        line = next(row for row in out.splitlines() if row.startswith(name + " "))
        assert ", ".join(f"{v:g}" for v in CORRUPTIONS.get(name).params) in line
    assert "20.4, 30.6, 45.9, 66.3, 96.9" in out and "25, 18, 15, 10, 7" in out
