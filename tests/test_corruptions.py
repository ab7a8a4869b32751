"""The corruption suite: each corruption keeps shape, dtype and device, is deterministic under its seed, and grows
with its severity; the stated parameters are the ones applied."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fer_bench.data.corruptions import (
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
from fer_bench.utils.errors import ConfigError

NAMES = CORRUPTIONS.names()
SAME_SIGMA = {("motion_blur", 3)}  # (corruption, severity) whose σ the next severity shares in the published table


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
    from fer_bench.data.corruptions import SAME_DRAWS_AT_EVERY_SEVERITY  # imported here: old code fails one test

    spec = CORRUPTIONS.get(name)
    white, black = torch.full((4, 48, 48), 255, dtype=torch.uint8), torch.zeros(4, 48, 48, dtype=torch.uint8)
    beyond = False
    for x in (white, black, faces[:8]):
        for s in SEVERITIES:
            level = None if name in SAME_DRAWS_AT_EVERY_SEVERITY else s
            gen = batch_generator(0, name, level, 0, x.device) if spec.random else None
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
    # CIFAR-10-C's motion blur has one σ at severities 3 and 4 (the longer radius adds taps of weight < 1e-8): alike
    alike = {(s, s + 1) for n, s in SAME_SIGMA if n == name}
    steps = enumerate(zip(dist, dist[1:], strict=False))
    assert all(a < b or (i + 1, i + 2) in alike and a == b for i, (a, b) in steps), dist


def test_the_stated_parameters_are_applied():
    grey = torch.full((4, 48, 48), 128, dtype=torch.uint8)
    # brightness 3: +0.15 of 255 → 166.25
    assert torch.equal(corrupt(grey, "brightness", 3), torch.full_like(grey, 166))
    # gaussian noise 5: σ = 0.10 of 255 = 25.5 grey levels (no clipping reached from 128 at this σ... rarely; ±3 %)
    noise = corrupt(grey, "gaussian_noise", 5, seed=0).float() - 128
    assert noise.std().item() == pytest.approx(25.5, rel=0.03) and abs(noise.mean().item()) < 0.5
    ramp = torch.arange(48, dtype=torch.uint8).repeat(1, 48, 1) * 4  # columns 0, 4, …, 188
    # contrast 5: (x − mean)·0.15 + mean
    expected = ((ramp.float() - ramp.float().mean()) * 0.15 + ramp.float().mean()).round().to(torch.uint8)
    assert torch.equal(corrupt(ramp, "contrast", 5), expected)


# CIFAR-10-C's parameters at 32 px (hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py), severities 1–5
CIFAR10C = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "jpeg": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
}
IN_PIXELS = {"gaussian_blur", "motion_blur"}  # the rule: × 48/32; the others (intensities, fractions) unchanged


@pytest.mark.parametrize("name", sorted(CIFAR10C))
def test_each_published_corruption_follows_cifar10c_by_the_stated_rule(name):
    spec = CORRUPTIONS.get(name)
    scale = 48 / 32 if name in IN_PIXELS else 1.0
    flat = lambda ps: [v for p in ps for v in (p if isinstance(p, tuple) else (p,))]  # noqa: E731
    assert flat(spec.params) == pytest.approx([v * scale for v in flat(CIFAR10C[name])])
    assert spec.published == CIFAR10C[name] and spec.rule == ("pixels" if name in IN_PIXELS else spec.rule)


def test_the_occlusions_are_marked_as_ours():
    assert {n for n in NAMES if CORRUPTIONS.get(n).published is None} == {
        "occlusion_patches", "occlusion_eyes", "occlusion_mouth"}  # fmt: skip


def test_pixelate_is_a_box_resize_to_the_factor_and_back():
    from PIL import Image

    faces = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for s, factor in zip(SEVERITIES, CIFAR10C["pixelate"], strict=True):
        side = int(48 * factor)
        want = [np.asarray(Image.fromarray(f.numpy()).resize((side, side), Image.BOX).resize((48, 48), Image.BOX))
                for f in faces]  # fmt: skip
        assert np.array_equal(corrupt(faces, "pixelate", s).numpy(), np.stack(want))


def test_motion_blur_is_a_one_sided_streak_within_45_degrees_of_the_horizontal():
    dot = torch.zeros(64, 48, 48, dtype=torch.uint8)
    dot[:, 24, 24] = 255
    out = corrupt(dot, "motion_blur", 5, seed=0).float()
    ys, xs = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    lit = out > 0
    back = 24 - xs  # each output pixel reads the pixels ahead of it: the dot's light lies behind it, x ≤ 24
    assert bool(((back >= 0) & ((ys - 24).abs() <= back + 1))[None].expand_as(lit)[lit].all())
    assert (out[:, 24, 25:] == 0).all() and (out[:, :, :24].sum((1, 2)) > 0).all()  # never both sides
    angles = torch.atan2((out * (ys - 24)).sum((1, 2)), (out * (24 - xs)).sum((1, 2)))
    assert angles.abs().max() <= math.pi / 4 + 0.1 and angles.std() > 0.2  # a random angle per image


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
    for bad in ("0,1", "1,1", "x", "", "1,,3", "1,3,"):
        with pytest.raises(ConfigError, match="--severities"):
            parse_severities(bad)
    cases = (("jpeg,,jpeg", "empty name"), ("jpeg,", "empty name"), ("jpeg,jpeg", "named twice"), ("", "empty"))
    for bad, why in cases:
        with pytest.raises(ConfigError, match=f"--corruptions.*{why}"):
            parse_corruptions(bad)
    with pytest.raises(ConfigError, match="severity 6"):
        corrupt(torch.zeros(1, 8, 8, dtype=torch.uint8), "jpeg", 6)


def test_ls_corruptions_lists_the_registry_with_its_parameters(capsys):
    from fer_bench.cli import main
    from fer_bench.data.corruptions import format_params

    assert main(["ls", "corruptions", "--long"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        line = next(row for row in out.splitlines() if row.startswith(name + " "))
        assert format_params(CORRUPTIONS.get(name).params) in line
        if CORRUPTIONS.get(name).published:
            assert format_params(CORRUPTIONS.get(name).published) in line
    assert "(9, 1.5), (9, 2.25), (9, 3), (12, 3), (13.5, 3.75)" in out and "80, 65, 58, 50, 40" in out
    assert "CIFAR-10-C" in out and "× 48/32" in out
