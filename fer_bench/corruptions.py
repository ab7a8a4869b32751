"""The corruption suite: ten image corruptions at five severities each, applied per batch to the test images.

Every corruption takes a batch of uint8 faces as the dataset stores them ((B, H, W) grey, or (B, H, W, C)) and
returns uint8 of the same shape and device, values in 0–255: it acts before the model's own resize and
normalisation, as a camera or a codec would. Parameters are stated for a 48-px face and scale with the image side
(a 96-px face gets twice the blur radius). The random ones (noise, motion-blur angles, patch positions) draw from a
``torch.Generator`` on the images' device, seeded from (seed, corruption, severity, batch index), so a batch
corrupts the same way every time on one device type with one evaluation batch size. JPEG runs torchvision's
``encode_jpeg``/``decode_jpeg`` on CPU (the batch goes there and back).

The parameters follow ImageNet-C (Hendrycks & Dietterich, 2019) where it has the corruption, rescaled from 224 to
48 px for the geometric ones; occlusion is ours. The eye and mouth boxes, as fractions of the aligned face
(x0, y0, x1, y1), come from the mean FER2013 training face (dark bands of the eyes and mouth):
:data:`EYES_BOX` and :data:`MOUTH_BOX`.

Example:
    >>> import torch
    >>> faces = torch.full((2, 48, 48), 128, dtype=torch.uint8)
    >>> out = corrupt(faces, "brightness", severity=3, seed=0, batch=0)
    >>> out.dtype, out.shape, int(out[0, 0, 0])
    (torch.uint8, torch.Size([2, 48, 48]), 204)
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fer_bench.errors import ConfigError
from fer_bench.registry import Registry

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 48  # the side the stated pixel parameters are for
EYES_BOX = (0.15, 0.27, 0.85, 0.47)  # x0, y0, x1, y1 as fractions of the face: both eyes and the brows' lower edge
MOUTH_BOX = (0.28, 0.66, 0.72, 0.90)
PATCH_SIDE = 0.25  # random occlusion patches: squares of a quarter of the side (12 px at 48)


@dataclass(frozen=True)
class Corruption:
    """A registered corruption.

    Attributes:
        name: registry key.
        fn: ``fn(x, param, gen) -> x`` on float (B, C, H, W) pixels in 0–255; ``gen`` is None unless ``random``.
        params: the parameter at severities 1–5.
        param: what the parameter is, with its unit.
        description: one line for tables and the README.
        random: whether it draws random numbers (then a seed changes it).
    """

    name: str
    fn: Callable[[torch.Tensor, float, torch.Generator | None], torch.Tensor]
    params: tuple[float, ...]
    param: str
    description: str
    random: bool = False


CORRUPTIONS: Registry[Corruption] = Registry("corruption", list_hint="fer-bench ls corruptions")


def corruption(name: str, params: tuple[float, ...], param: str, description: str, *, random: bool = False):
    """Register ``fn(x, param, gen)`` as corruption ``name`` with its five severity parameters."""
    assert len(params) == len(SEVERITIES), name

    def wrap(fn):
        CORRUPTIONS.add(name, Corruption(name, fn, params, param, description, random))
        return fn

    return wrap


def batch_generator(seed: int, name: str, severity: int, batch: int, device: torch.device) -> torch.Generator:
    """The generator of one (corruption, severity, batch): a stable digest of the four, not Python's ``hash``."""
    digest = hashlib.sha256(f"{seed}/{name}/{severity}/{batch}".encode()).digest()
    return torch.Generator(device).manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def corrupt(images: torch.Tensor, name: str, severity: int, *, seed: int = 0, batch: int = 0) -> torch.Tensor:
    """``images`` (uint8, (B, H, W) or (B, H, W, C)) under corruption ``name`` at ``severity`` (1–5).

    Returns uint8 of the same shape on the same device. Deterministic in (seed, name, severity, batch, device type).
    """
    spec = CORRUPTIONS.get(name)
    if severity not in SEVERITIES:
        raise ConfigError(f"severity {severity} of {name!r}: expected one of {', '.join(map(str, SEVERITIES))}.")
    if images.dtype != torch.uint8:
        raise TypeError(f"corrupt() takes uint8 images, got {images.dtype}")
    x = _to_bchw(images).to(torch.float32)
    gen = batch_generator(seed, name, severity, batch, images.device) if spec.random else None
    out = spec.fn(x, spec.params[severity - 1], gen)
    return _from_bchw(out.round().clamp(0, 255).to(torch.uint8), images.shape)


def _to_bchw(images: torch.Tensor) -> torch.Tensor:
    return images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)


def _from_bchw(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return (x.squeeze(1) if len(shape) == 3 else x.permute(0, 2, 3, 1)).contiguous()


def _px(x: torch.Tensor, length: float) -> float:
    """A length stated for a 48-px face, at this image's side."""
    return length * x.shape[-1] / REFERENCE_SIDE


@corruption(
    "gaussian_noise",
    (20.4, 30.6, 45.9, 66.3, 96.9),
    "σ (grey levels of 255)",
    "additive Gaussian noise, independent per pixel (ImageNet-C σ 0.08–0.38 of the range)",
    random=True,
)
def _gaussian_noise(x, sigma, gen):
    return x + torch.randn(x.shape, generator=gen, device=x.device) * sigma


@corruption("gaussian_blur", (0.5, 0.75, 1.0, 1.5, 2.0), "σ (px at 48)", "Gaussian blur, reflected borders")
def _gaussian_blur(x, sigma, gen):
    s = _px(x, sigma)
    r = max(1, math.ceil(3 * s))
    k = torch.exp(-(torch.arange(-r, r + 1, device=x.device, dtype=x.dtype) ** 2) / (2 * s * s))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(-1, -2), groups=x.shape[1])


@corruption(
    "motion_blur",
    (3.0, 5.0, 7.0, 9.0, 11.0),
    "streak length (px at 48)",
    "linear motion blur, a random direction per image (uniform over 180°)",
    random=True,
)
def _motion_blur(x, length, gen):
    b, c, h, w = x.shape
    half = (_px(x, length) - 1) / 2
    r = max(1, math.ceil(half))
    theta = torch.rand(b, generator=gen, device=x.device) * math.pi
    grid = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    v, u = torch.meshgrid(grid, grid, indexing="ij")
    cos, sin = theta.cos().view(b, 1, 1), theta.sin().view(b, 1, 1)
    across = (-sin * u + cos * v).abs()  # distance from the streak's line
    along = (cos * u + sin * v).abs()
    kernel = (1 - across).clamp(min=0) * (along <= half + 1e-6)
    kernel = kernel / kernel.sum((1, 2), keepdim=True)
    kernel = kernel.repeat_interleave(c, 0).unsqueeze(1)  # one kernel per (image, channel)
    x = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="reflect")
    return F.conv2d(x, kernel, groups=b * c).view(b, c, h, w)


@corruption("jpeg", (25, 18, 15, 10, 7), "JPEG quality", "JPEG compression (torchvision encode/decode, on CPU)")
def _jpeg(x, quality, gen):
    with warnings.catch_warnings():  # NOTE: torchvision 0.29 deprecates its codecs for torchcodec; same libjpeg
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg, encode_jpeg

        cpu = list(x.round().clamp(0, 255).to(torch.uint8).cpu())
        decoded = decode_jpeg(encode_jpeg(cpu, quality=int(quality)))
    return torch.stack(decoded).to(x.device, x.dtype)


@corruption(
    "pixelate",
    (2, 3, 4, 5, 6),
    "block side (px at 48)",
    "each block of b×b pixels replaced by its mean (blocks cut at the border are averaged over what is in)",
)
def _pixelate(x, block, gen):
    b = max(1, round(_px(x, block)))
    h, w = x.shape[-2:]
    small = F.avg_pool2d(x, b, ceil_mode=True)
    return small.repeat_interleave(b, -2).repeat_interleave(b, -1)[..., :h, :w]


@corruption(
    "brightness",
    (0.1, 0.2, 0.3, 0.4, 0.5),
    "shift (fraction of 255)",
    "every pixel lighter by a fixed amount (ImageNet-C's value shift), clipped at white",
)
def _brightness(x, shift, gen):
    return x + shift * 255


@corruption(
    "contrast",
    (0.4, 0.3, 0.2, 0.1, 0.05),
    "contrast factor",
    "pixels pulled towards the image's mean: (x − mean)·factor + mean (ImageNet-C)",
)
def _contrast(x, factor, gen):
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


@corruption(
    "occlusion_patches",
    (1, 2, 3, 4, 5),
    "black squares of ¼ side (count)",
    "black squares, a quarter of the side each, at random positions (may overlap)",
    random=True,
)
def _occlusion_patches(x, count, gen):
    b, _, h, w = x.shape
    sy, sx = max(1, round(h * PATCH_SIDE)), max(1, round(w * PATCH_SIDE))
    y0 = torch.randint(0, h - sy + 1, (b, int(count), 1), generator=gen, device=x.device)
    x0 = torch.randint(0, w - sx + 1, (b, int(count), 1), generator=gen, device=x.device)
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_y = (rows >= y0) & (rows < y0 + sy)  # (B, count, H)
    in_x = (cols >= x0) & (cols < x0 + sx)
    mask = (in_y.unsqueeze(-1) & in_x.unsqueeze(-2)).any(1, keepdim=True)
    return x.masked_fill(mask, 0.0)


BOX_SCALES = (0.5, 0.625, 0.75, 0.875, 1.0)  # the box's width and height at severities 1–5, about its centre


def _box(x: torch.Tensor, box: tuple[float, float, float, float], scale: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * scale / 2, (box[3] - box[1]) * scale / 2
    out = x.clone()
    out[..., round((cy - hh) * h) : round((cy + hh) * h), round((cx - hw) * w) : round((cx + hw) * w)] = 0.0
    return out


@corruption(
    "occlusion_eyes",
    BOX_SCALES,
    "box scale",
    f"a black box over both eyes: {EYES_BOX} (x0, y0, x1, y1 of the face) scaled about its centre",
)
def _occlusion_eyes(x, scale, gen):
    return _box(x, EYES_BOX, scale)


@corruption(
    "occlusion_mouth",
    BOX_SCALES,
    "box scale",
    f"a black box over the mouth: {MOUTH_BOX} (x0, y0, x1, y1 of the face) scaled about its centre",
)
def _occlusion_mouth(x, scale, gen):
    return _box(x, MOUTH_BOX, scale)


def parse_corruptions(text: str) -> tuple[str, ...]:
    """``all`` or ``name,name,…`` → registry names (unknown ones get the registry's did-you-mean error)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return tuple(CORRUPTIONS.names())
    if not names:
        raise ConfigError("--corruptions is empty: give `all` or names, e.g. --corruptions gaussian_noise,jpeg.")
    return tuple(CORRUPTIONS.get(n).name for n in names)


def parse_severities(text: str) -> tuple[int, ...]:
    """``1,2,3`` → (1, 2, 3), each in 1–5, each once."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v not in SEVERITIES for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"--severities {text!r}: expected distinct values from 1–5, e.g. --severities 1,3,5.")
    return values
