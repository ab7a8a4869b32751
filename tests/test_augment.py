from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from fer_bench.data.augment import (
    BatchAugment,
    Normalize,
    affine_matrix,
    affine_params,
    photometric,
    random_erase,
    ten_crop,
)
from fer_bench.data.synthetic import make_synthetic
from fer_bench.recipes.schema import AugmentCfg

OFF = AugmentCfg(hflip=0, crop_scale=(1, 1), crop_ratio=(1, 1), rotate=0, translate=0, brightness=0, contrast=0,
                 erase_p=0)  # fmt: skip
GREY = Normalize(48, 1, (0.0,), (1.0,))


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    images, _, _ = make_synthetic(n_train=64, n_public=0, n_private=0)
    return torch.from_numpy(images)


def _run(cfg: AugmentCfg, x: torch.Tensor, seed: int = 0, norm: Normalize = GREY) -> torch.Tensor:
    y = torch.arange(len(x))
    out, y_out = BatchAugment(cfg, norm)(x, y, torch.Generator().manual_seed(seed))
    assert torch.equal(y_out, y)
    return out


def test_same_seed_same_batch_other_seed_other_batch(faces):
    a, b, c = _run(AugmentCfg(), faces, 1), _run(AugmentCfg(), faces, 1), _run(AugmentCfg(), faces, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_all_ops_off_is_the_identity(faces):
    out = _run(OFF, faces)
    torch.testing.assert_close(out[:, 0], faces.float() / 255, atol=1e-5, rtol=0)


def test_flip_mirrors_the_image(faces):
    out = _run(dataclasses.replace(OFF, hflip=1.0), faces)
    torch.testing.assert_close(out[:, 0], faces.flip(-1).float() / 255, atol=1e-5, rtol=0)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = torch.nn.functional.affine_grid(theta, [len(x), 1, 48, 48], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, align_corners=False)


def test_rotation_by_180_degrees_turns_the_image_upside_down():
    x = torch.rand(1, 1, 48, 48)
    one, zero = torch.ones(1), torch.zeros(1)
    out = _warp(x, affine_matrix(one, one, zero, zero, torch.full((1,), math.pi)))
    torch.testing.assert_close(out, x.flip(-1).flip(-2), atol=1e-4, rtol=0)


def test_crop_zooms_into_its_region():
    x = torch.zeros(1, 1, 48, 48)
    x[..., 12:36, 12:36] = 1.0  # a bright central square of half the side
    half, zero = torch.full((1,), 0.5), torch.zeros(1)
    out = _warp(x, affine_matrix(half, half, zero, zero, zero))  # the central half of each side, enlarged ×2
    assert out[..., 1:-1, 1:-1].min() > 0.99


def test_random_crops_stay_inside_the_image_without_translation():
    cfg = dataclasses.replace(OFF, crop_scale=(0.3, 1.0), crop_ratio=(0.75, 1.33))
    theta = affine_params(4096, cfg, torch.Generator().manual_seed(0), "cpu")
    corners = theta[:, :, :2].abs().sum(2) + theta[:, :, 2].abs()  # the farthest source coordinate reached
    assert corners.max() <= 1.0 + 1e-5


def test_photometric_stays_in_range_and_changes_contrast(faces):
    x = faces[:, None].float() / 255
    out = photometric(x, dataclasses.replace(OFF, brightness=0.9, contrast=0.9), torch.Generator().manual_seed(0))
    assert out.min() >= 0 and out.max() <= 1 and not torch.equal(out, x)


def test_erasing_zeros_one_rectangle():
    x = torch.ones(32, 1, 48, 48)
    out = random_erase(x, dataclasses.replace(OFF, erase_p=1.0, erase_scale=(0.1, 0.1)), torch.Generator())
    for img in out[:, 0]:
        zero = (img == 0).nonzero()
        rows, cols = zero[:, 0], zero[:, 1]
        assert len(zero) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one full rectangle
        assert 0.05 < len(zero) / 48**2 < 0.15


def test_output_shape_channels_range_and_label_alignment(faces):
    norm = Normalize(64, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    out = _run(AugmentCfg(), faces, norm=norm)
    assert out.shape == (64, 3, 64, 64) and out.dtype == torch.float32
    assert torch.equal(out[:, 0], out[:, 2])  # grey repeated to every channel
    assert out.min() >= -2.0 - 1e-5 and out.max() <= 2.0 + 1e-5  # (x - 0.5) / 0.25 with x in [0, 1]
    # Labels stay aligned: sample i of the output comes from sample i of the input (per-image means correlate).
    src = faces.float().mean((1, 2))
    dst = _run(dataclasses.replace(OFF, hflip=1.0, rotate=10), faces).mean((1, 2, 3)) * 255
    assert np.corrcoef(src.numpy(), dst.numpy())[0, 1] > 0.95


def test_ten_crop_corners_centre_and_mirrors():
    x = torch.arange(48 * 48, dtype=torch.float32).view(1, 1, 48, 48)
    crops = ten_crop(x, 40)
    assert crops.shape == (10, 1, 1, 40, 40)
    assert torch.equal(crops[0], x[..., :40, :40]) and torch.equal(crops[3], x[..., 8:, 8:])
    assert torch.equal(crops[4], x[..., 4:44, 4:44]) and torch.equal(crops[5], crops[0].flip(-1))


def test_train_ten_crop_gives_ten_labelled_samples_per_image(faces):
    norm = Normalize(48, 1, (0.0,), (1.0,), crop=40)
    y = torch.arange(len(faces))
    out, y_out = BatchAugment(dataclasses.replace(OFF, train_crops="tencrop"), norm)(faces, y, torch.Generator())
    assert out.shape == (10 * len(faces), 1, 40, 40)
    assert torch.equal(y_out, y.repeat(10))
    torch.testing.assert_close(out[: len(faces), 0], faces[:, :40, :40].float() / 255, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[4 * len(faces) :5 * len(faces), 0], faces[:, 4:44, 4:44].float() / 255,
                               atol=1e-5, rtol=0)  # fmt: skip


def test_rotation_probability_zero_means_no_rotation(faces):
    out = _run(dataclasses.replace(OFF, rotate=30, rotate_p=0.0), faces)
    torch.testing.assert_close(out[:, 0], faces.float() / 255, atol=1e-5, rtol=0)


def test_eval_normalize_centre_crops():
    x = torch.arange(48 * 48, dtype=torch.float32).view(1, 48, 48).clamp(max=255).to(torch.uint8)
    out = Normalize(48, 1, (0.0,), (1.0,), crop=40)(x)
    torch.testing.assert_close(out[0, 0], x[0, 4:44, 4:44].float() / 255)


@pytest.mark.parametrize("size", [1, 7, 44, 48])
def test_the_affine_grid_equals_torchs(size):
    from fer_bench.data.augment import affine_grid

    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(size))
    want = torch.nn.functional.affine_grid(theta, [5, 1, size, size], align_corners=False)
    assert torch.allclose(affine_grid(theta, size), want, atol=2e-6)


def test_random_erase_touches_only_the_chosen_samples_and_never_the_callers_tensor():
    x = torch.rand(64, 1, 20, 20)
    before = x.clone()
    p = dataclasses.replace(OFF, erase_p=0.5, erase_scale=(0.1, 0.1))
    out = random_erase(x, p, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)  # not in place unless asked
    changed = (out != x).flatten(1).any(1)
    assert 10 < int(changed.sum()) < 54  # about half the samples, each one rectangle of zeros
    assert torch.equal(out[~changed], x[~changed])
    assert ((out[changed] == 0) | (out[changed] == x[changed])).all()
    again = random_erase(x.clone(), p, torch.Generator().manual_seed(0), inplace=True)
    assert torch.equal(again, out)  # in place gives the same numbers


def test_normalize_never_writes_into_a_float_input():
    from fer_bench.data.augment import Normalize

    x = torch.rand(2, 48, 48) * 255
    before = x.clone()
    Normalize(48, 3, (0.5,), (0.5,))(x)
    assert torch.equal(x, before)
