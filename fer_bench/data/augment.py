"""Batched augmentation on the training device: whole uint8 batches in, normalised float batches out.

Every geometric op (random resized crop, flip, rotation, translation, resize to the model's input)
is folded into one affine matrix per sample and applied with a single ``grid_sample``; photometric
ops and random erasing are per-sample tensor arithmetic. Random parameters come from a seeded
``torch.Generator``, so a batch is a pure function of (images, seed).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from fer_bench.recipes.schema import AugmentCfg as AugmentParams


LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # RGB → grey weights (ITU-R 601, as PIL)


class Normalize:
    """uint8 (B,H,W) grey or (B,H,W,3) RGB → float (B,C,S,S): resize to ``size``, centre-crop to ``crop`` (if set),
    scale to [0, 1], convert to the model's C channels (grey repeated, or RGB to luma), standardise.

    The store keeps each dataset's native size and channels; this is the one place they meet the model's.
    """

    def __init__(
        self, size: int, channels: int, mean: tuple[float, ...], std: tuple[float, ...], crop: int | None = None
    ) -> None:
        self.size, self.channels, self.crop = size, channels, crop
        self.mean = torch.tensor(mean[:channels] if len(mean) >= channels else mean * channels).view(1, -1, 1, 1)
        self.std = torch.tensor(std[:channels] if len(std) >= channels else std * channels).view(1, -1, 1, 1)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B,H,W) or channels-last (B,H,W,C) → float [0,1] (B,C,H,W) (C = 1 for grey)."""
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        # out of place: for a float32 input ``.to`` returns the caller's own tensor, which ``mul_`` would overwrite
        return x.to(torch.float32).mul(1.0 / 255.0)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] (B,1|3,S,S) → standardised (B,C,S,S) in one broadcast pass: x · (1/std) − mean/std.

        Grey input broadcasts to C channels; RGB input for a one-channel model becomes luma first (ITU-R 601
        weights, PIL's ``convert("L")``)."""
        if x.shape[1] == 3 and self.channels == 1:
            x = (x * LUMA.to(x.device, x.dtype)).sum(1, keepdim=True)
        inv = (1.0 / self.std).to(x.device)
        return torch.addcmul(-self.mean.to(x.device) * inv, x, inv)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_float(x)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        if self.crop is not None:
            off = (self.size - self.crop) // 2
            x = x[..., off : off + self.crop, off : off + self.crop]
        return self.finish(x)


class BatchAugment:
    """Training transform: augment a uint8 batch on its device with per-sample random parameters.

    With ``train_crops: tencrop`` every augmented image yields ten crops of ``norm.crop`` pixels, each
    a training sample with the image's label (Khaireddin & Chen); erasing then acts on each crop.
    """

    def __init__(self, params: AugmentParams, norm: Normalize) -> None:
        self.p, self.norm = params, norm
        if params.train_crops == "tencrop" and norm.crop is None:
            raise ValueError("train_crops=tencrop needs a Normalize with a crop size")

    def ops(self) -> list[tuple[str, tuple]]:
        """The operations this transform applies, in order, with their settings (ops switched off left out): what
        a pipeline that claims to do the same work must list too (``bench.data_pipelines.torchvision_ops``). Every
        geometric op is one bilinear sample of the uint8 source (``__call__``)."""
        p = self.p
        crop = ("random_resized_crop", (self.norm.size, tuple(p.crop_scale), tuple(p.crop_ratio), "bilinear"))
        ops = [("to_float", ()), crop]
        ops += [("hflip", (p.hflip,))] if p.hflip else []
        ops += [("rotate", (float(p.rotate), p.rotate_p, "bilinear"))] if p.rotate and p.rotate_p else []
        ops += [("translate", (float(p.translate), p.translate_p, "bilinear"))] if p.translate and p.translate_p else []
        for name, v in (("brightness", p.brightness), ("contrast", p.contrast)):
            ops += [(name, (round(1 - float(v), 6), round(1 + float(v), 6)))] if v else []
        ops += [("ten_crop", (self.norm.crop,))] if p.train_crops == "tencrop" else []
        ops += [("center_crop", (self.norm.crop,))] if self.norm.crop and p.train_crops != "tencrop" else []
        ops += [("erase", (p.erase_p, tuple(p.erase_scale), (0.3, 3.3), 0.0))] if p.erase_p else []
        means = tuple(round(float(v), 4) for v in self.norm.mean.flatten())
        stds = tuple(round(float(v), 4) for v in self.norm.std.flatten())
        return ops + [("to_channels", (self.norm.channels,)), ("normalize", (means, stds))]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        img = self.norm.to_float(x)
        theta = affine_params(b, self.p, gen, x.device)
        grid = affine_grid(theta, self.norm.size)
        img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        img = photometric(img, self.p, gen)
        if self.p.train_crops == "tencrop":
            img = ten_crop(img, self.norm.crop).flatten(0, 1)
            y = y.repeat(10, *(1,) * (y.ndim - 1))  # crop-major, as ten_crop stacks; y: labels or distributions
        elif self.norm.crop is not None:
            off = (self.norm.size - self.norm.crop) // 2
            img = img[..., off : off + self.norm.crop, off : off + self.norm.crop]
        img = random_erase(img, self.p, gen, inplace=True)  # img is this call's own tensor
        return self.norm.finish(img), y


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def _bernoulli(n: int, p: float, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=gen, device=device) < p).float()


def affine_params(b: int, p: AugmentParams, gen: torch.Generator, device) -> torch.Tensor:
    """Per-sample (B,2,3) matrices mapping output to source coordinates (``affine_grid`` convention)."""
    area = _uniform(b, *p.crop_scale, gen, device)
    log_r = _uniform(b, math.log(p.crop_ratio[0]), math.log(p.crop_ratio[1]), gen, device)
    # Crop width/height as fractions of the source side; above 1 (crop_scale > 1) the crop is zero-padded.
    side_max = max(1.0, math.sqrt(p.crop_scale[1]))
    w = (area * log_r.exp()).sqrt().clamp(max=side_max)
    h = (area / log_r.exp()).sqrt().clamp(max=side_max)
    # The crop centre ranges over the part of the image the crop fits in, plus the extra translation.
    shift = _bernoulli(b, p.translate_p, gen, device) * 2
    cx = (1 - w) * _uniform(b, -1, 1, gen, device) + _uniform(b, -p.translate, p.translate, gen, device) * shift
    cy = (1 - h) * _uniform(b, -1, 1, gen, device) + _uniform(b, -p.translate, p.translate, gen, device) * shift
    angle = _uniform(b, -p.rotate, p.rotate, gen, device) * (math.pi / 180) * _bernoulli(b, p.rotate_p, gen, device)
    flip = torch.where(torch.rand(b, generator=gen, device=device) < p.hflip, -1.0, 1.0)
    return affine_matrix(w * flip, h, cx, cy, angle)


def affine_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """``F.affine_grid(theta, [B, 1, size, size], align_corners=False)`` as one batched matmul of a cached base
    grid: on CPU ``affine_grid`` spends most of its time building a (B, H, W, 3) base grid for every batch."""
    base = _base_grid(size, theta.device, theta.dtype)
    return torch.matmul(base, theta.transpose(1, 2)).view(theta.shape[0], size, size, 2)


@functools.lru_cache(maxsize=16)
def _base_grid(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, size², 3) rows of (x, y, 1) at pixel centres in [-1, 1], row-major (y outer), as ``affine_grid`` has."""
    lin = (torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1
    ones = torch.ones(size * size, dtype=torch.float64)
    return torch.stack([lin.repeat(size), lin.repeat_interleave(size), ones], 1).to(device, dtype)[None]


def affine_matrix(
    sx: torch.Tensor, sy: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, angle: torch.Tensor
) -> torch.Tensor:
    """(B,2,3) matrices: scale by (sx, sy) (negative sx mirrors), rotate by ``angle`` radians, centre at (cx, cy)."""
    cos, sin = angle.cos(), angle.sin()
    return torch.stack([torch.stack([cos * sx, -sin * sy, cx], 1), torch.stack([sin * sx, cos * sy, cy], 1)], 1)


def photometric(img: torch.Tensor, p: AugmentParams, gen: torch.Generator) -> torch.Tensor:
    """Brightness (×b) then contrast (blend with the per-image mean by c), clamped to [0, 1].

    Both are folded into one per-sample affine map: ((x·b − m·b)·c + m·b) = x·(b·c) + m·b·(1 − c),
    with m the image mean before brightness, so the batch is read and written once.
    """
    if p.brightness == 0 and p.contrast == 0:
        return img
    b = img.shape[0]
    bright = _uniform(b, 1 - p.brightness, 1 + p.brightness, gen, img.device)
    contrast = _uniform(b, 1 - p.contrast, 1 + p.contrast, gen, img.device)
    mean = img.mean(dim=(1, 2, 3))
    scale, shift = (bright * contrast).view(b, 1, 1, 1), (mean * bright * (1 - contrast)).view(b, 1, 1, 1)
    return torch.addcmul(shift, img, scale).clamp_(0.0, 1.0)


def random_erase(img: torch.Tensor, p: AugmentParams, gen: torch.Generator, inplace: bool = False) -> torch.Tensor:
    """With probability ``erase_p`` per sample, set one random rectangle to 0 (torchvision's default value).
    ``inplace``: write into ``img`` (BatchAugment's own intermediate) instead of a copy."""
    if p.erase_p == 0:
        return img
    b, _, hgt, wid = img.shape
    dev = img.device
    area = _uniform(b, *p.erase_scale, gen, dev)
    ratio = _uniform(b, math.log(0.3), math.log(3.3), gen, dev).exp()
    eh, ew = (area / ratio).sqrt().clamp(max=1.0), (area * ratio).sqrt().clamp(max=1.0)
    y0, x0 = _uniform(b, 0, 1, gen, dev) * (1 - eh), _uniform(b, 0, 1, gen, dev) * (1 - ew)
    on = torch.rand(b, generator=gen, device=dev) < p.erase_p
    # Only the erased samples are touched (every random draw above is made for all, so the stream does not depend
    # on which samples are erased); on CPU this is most of this op's cost at erase_p 0.25.
    sel = on.nonzero().squeeze(1)
    if sel.numel() == 0:
        return img
    y0, x0, eh, ew = y0[sel], x0[sel], eh[sel], ew[sel]
    ys = (torch.arange(hgt, device=dev) + 0.5) / hgt
    xs = (torch.arange(wid, device=dev) + 0.5) / wid
    in_y = ((ys[None] >= y0[:, None]) & (ys[None] < (y0 + eh)[:, None])).to(img.dtype)
    in_x = ((xs[None] >= x0[:, None]) & (xs[None] < (x0 + ew)[:, None])).to(img.dtype)
    # The rectangle is the outer product of its row and column ranges: keep = 1 − rows ⊗ cols.
    keep = torch.baddbmm(torch.ones(1, 1, 1, device=dev, dtype=img.dtype), in_y[:, :, None], in_x[:, None, :], alpha=-1)
    img = img if inplace else img.clone()
    img[sel] = img[sel] * keep[:, None]
    return img


def ten_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """(B,C,H,W) → (10,B,C,crop,crop): four corners and the centre, then their mirror images."""
    h, w = x.shape[-2:]
    tops = [0, 0, h - crop, h - crop, (h - crop) // 2]
    lefts = [0, w - crop, 0, w - crop, (w - crop) // 2]
    crops = [x[..., t : t + crop, le : le + crop] for t, le in zip(tops, lefts, strict=True)]
    return torch.stack(crops + [c.flip(-1) for c in crops])
