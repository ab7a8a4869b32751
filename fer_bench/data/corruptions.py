"""The corruption suite: ten image corruptions at five severities each, applied per batch to the test images.

Every corruption takes a batch of uint8 faces as the dataset stores them ((B, H, W) grey, or (B, H, W, C)) and
returns uint8 of the same shape and device, values in 0–255: it acts before the model's own resize and
normalisation, as a camera or a codec would. Parameters are stated for a 48-px face and scale with the image side
(a 96-px face gets twice the blur radius). The random ones (noise, motion-blur angles, patch positions) draw from a
``torch.Generator`` on the images' device, seeded from (seed, corruption, severity, batch index), so a batch
corrupts the same way every time on one device type with one evaluation batch size; motion blur draws its angles
from (seed, corruption, batch index), so an image streaks the same way at every severity. JPEG and pixelate run on
CPU (torchvision's ``encode_jpeg``/``decode_jpeg``; PIL's box resize), the batch going there and back.

**Published definition and the rule that brings it to 48 px.** Seven corruptions follow CIFAR-10-C (Hendrycks &
Dietterich, ICLR 2019; the parameter tables of ``ImageNet-C/create_c/make_cifar_c.py`` in hendrycks/robustness),
defined on 32-px images, adapted to 48 px by one rule (:data:`RULES`):

- parameters in pixels (Gaussian blur σ; motion blur radius and σ) are multiplied by 48/32 = 1.5;
  CIFAR-10-C's motion blur has one σ at severities 3 and 4 (only the radius grows, adding taps of weight < 1e-8),
  so those two severities are nearly identical;
- parameters of intensity (noise σ, brightness shift, contrast factor, JPEG quality) are unchanged: they do not
  depend on the image side;
- pixelate's factor is a fraction of the side (the image is resized to side × factor and back), so it is unchanged.

``fer-bench ls corruptions`` lists both tables. The three occlusions are ours (no published small-image definition):
black boxes whose eye and mouth positions, as fractions of the aligned face (x0, y0, x1, y1), come from the mean
FER2013 training face (dark bands of the eyes and mouth): :data:`EYES_BOX` and :data:`MOUTH_BOX`.

Example:
    >>> import torch
    >>> faces = torch.full((2, 48, 48), 128, dtype=torch.uint8)
    >>> out = corrupt(faces, "brightness", severity=3, seed=0, batch=0)
    >>> out.dtype, out.shape, int(out[0, 0, 0])
    (torch.uint8, torch.Size([2, 48, 48]), 166)
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fer_bench.utils.errors import ConfigError
from fer_bench.utils.registry import Registry

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 48  # the side the stated pixel parameters are for
PUBLISHED_SIDE = 32  # CIFAR-10-C's side, the published definition's
EYES_BOX = (0.15, 0.27, 0.85, 0.47)  # x0, y0, x1, y1 as fractions of the face: both eyes and the brows' lower edge
MOUTH_BOX = (0.28, 0.66, 0.72, 0.90)
PATCH_SIDE = 0.25  # random occlusion patches: squares of a quarter of the side (12 px at 48)
PUBLISHED = "CIFAR-10-C (Hendrycks & Dietterich 2019, hendrycks/robustness make_cifar_c.py)"

Param = float | tuple[float, ...]


def _scale(value: Param, factor: float) -> Param:
    return tuple(round(v * factor, 4) for v in value) if isinstance(value, tuple) else round(value * factor, 4)


# How a published 32-px parameter becomes the 48-px one: name → (what the rule says, the function applying it).
RULES: dict[str, tuple[str, Callable[[Param], Param]]] = {
    "pixels": (f"px × {REFERENCE_SIDE}/{PUBLISHED_SIDE}", lambda v: _scale(v, REFERENCE_SIDE / PUBLISHED_SIDE)),
    "intensity": ("unchanged (intensity)", lambda v: v),
    "fraction": ("unchanged (a fraction of the side)", lambda v: v),
    "ours": ("ours (no published definition)", lambda v: v),
}


@dataclass(frozen=True)
class Corruption:
    """A registered corruption.

    Attributes:
        name: registry key.
        fn: ``fn(x, param, gen) -> x`` on float (B, C, H, W) pixels in 0–255; ``gen`` is None unless ``random``.
        params: the parameter at severities 1–5, for a 48-px face.
        param: what the parameter is, with its unit.
        description: one line for tables and the README.
        random: whether it draws random numbers (then a seed changes it).
        published: the published 32-px parameters (None for ours).
        rule: the :data:`RULES` key that turned ``published`` into ``params``.
    """

    name: str
    fn: Callable[[torch.Tensor, Param, torch.Generator | None], torch.Tensor]
    params: tuple[Param, ...]
    param: str
    description: str
    random: bool = False
    published: tuple[Param, ...] | None = None
    rule: str = "ours"


CORRUPTIONS: Registry[Corruption] = Registry("corruption", list_hint="fer-bench ls corruptions")


def corruption(name: str, values: tuple[Param, ...], param: str, description: str, *, rule: str, random: bool = False):
    """Register ``fn(x, param, gen)`` as corruption ``name``; ``values`` are the published 32-px parameters at
    severities 1–5 (ours for ``rule="ours"``), turned into 48-px ones by :data:`RULES`."""
    assert len(values) == len(SEVERITIES) and rule in RULES, name
    params = tuple(RULES[rule][1](v) for v in values)
    published = None if rule == "ours" else tuple(values)

    def wrap(fn):
        CORRUPTIONS.add(name, Corruption(name, fn, params, param, description, random, published, rule))
        return fn

    return wrap


def batch_generator(seed: int, name: str, severity: int | None, batch: int, device: torch.device) -> torch.Generator:
    """The generator of one (corruption, severity, batch): a stable digest of the four, not Python's ``hash``;
    ``severity=None`` gives one generator for every severity."""
    digest = hashlib.sha256(f"{seed}/{name}/{'' if severity is None else severity}/{batch}".encode()).digest()
    return torch.Generator(device).manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


SAME_DRAWS_AT_EVERY_SEVERITY = {"motion_blur"}  # its angles: an image streaks the same way at every severity


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
    level = None if name in SAME_DRAWS_AT_EVERY_SEVERITY else severity
    gen = batch_generator(seed, name, level, batch, images.device) if spec.random else None
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
    (0.04, 0.06, 0.08, 0.09, 0.10),
    "σ (fraction of the 0–255 range)",
    "additive Gaussian noise, independent per pixel",
    rule="intensity",
    random=True,
)
def _gaussian_noise(x, sigma, gen):
    return x + torch.randn(x.shape, generator=gen, device=x.device) * sigma * 255


@corruption(
    "gaussian_blur",
    (0.4, 0.6, 0.7, 0.8, 1.0),
    "σ (px at 48)",
    "Gaussian blur, kernel cut at 4σ, edge pixels repeated (scikit-image's defaults)",
    rule="pixels",
)
def _gaussian_blur(x, sigma, gen):
    s = _px(x, sigma)
    r = max(1, math.ceil(4 * s))
    k = torch.exp(-(torch.arange(-r, r + 1, device=x.device, dtype=x.dtype) ** 2) / (2 * s * s))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.transpose(-1, -2), groups=x.shape[1])


@corruption(
    "motion_blur",
    ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "(radius, σ) (px at 48)",
    "one-sided motion streak (ImageMagick's motion blur: Gaussian weights of σ over 2·⌈radius⌉+1 taps), "
    "a random angle per image, uniform in ±45° of the horizontal",
    rule="pixels",
    random=True,
)
def _motion_blur(x, radius_sigma, gen):
    b, c, h, w = x.shape
    radius, sigma = (_px(x, v) for v in radius_sigma)
    taps = torch.arange(2 * math.ceil(radius) + 1, device=x.device, dtype=x.dtype)
    weight = torch.exp(-(taps**2) / (2 * sigma * sigma))
    weight = weight / weight.sum()
    theta = (torch.rand(b, generator=gen, device=x.device) * 2 - 1) * (math.pi / 4)
    r = len(taps) - 1
    dx = torch.ceil(taps * theta.cos().unsqueeze(1) - 0.5).long() + r  # (B, taps): the pixel each tap reads
    dy = torch.ceil(taps * theta.sin().unsqueeze(1) - 0.5).long() + r
    kernel = torch.zeros(b, 2 * r + 1, 2 * r + 1, device=x.device, dtype=x.dtype)
    rows = torch.arange(b, device=x.device).unsqueeze(1).expand_as(dx)
    kernel.index_put_((rows, dy, dx), weight.expand_as(dx).contiguous(), accumulate=True)
    kernel = kernel.repeat_interleave(c, 0).unsqueeze(1)  # one kernel per (image, channel)
    x = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="replicate")
    return F.conv2d(x, kernel, groups=b * c).view(b, c, h, w)


def _on_cpu_uint8(x: torch.Tensor) -> list[torch.Tensor]:
    return list(x.round().clamp(0, 255).to(torch.uint8).cpu())


@corruption(
    "jpeg",
    (80, 65, 58, 50, 40),
    "JPEG quality",
    "JPEG compression (torchvision encode/decode, on CPU)",
    rule="intensity",
)
def _jpeg(x, quality, gen):
    with warnings.catch_warnings():  # NOTE: torchvision 0.29 deprecates its codecs for torchcodec; same libjpeg
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg, encode_jpeg

        decoded = decode_jpeg(encode_jpeg(_on_cpu_uint8(x), quality=int(quality)))
    return torch.stack(decoded).to(x.device, x.dtype)


@corruption(
    "pixelate",
    (0.95, 0.9, 0.85, 0.75, 0.65),
    "resize factor (fraction of the side)",
    "resized to ⌊side·factor⌋ and back, both with PIL's box filter (on CPU)",
    rule="fraction",
)
def _pixelate(x, factor, gen):
    from PIL import Image

    h, w = x.shape[-2:]
    small = (int(w * factor), int(h * factor))
    out = []
    for img in _on_cpu_uint8(x):
        channels = [Image.fromarray(ch.numpy()).resize(small, Image.BOX).resize((w, h), Image.BOX) for ch in img]
        out.append(torch.stack([torch.from_numpy(np.array(ch)) for ch in channels]))
    return torch.stack(out).to(x.device, x.dtype)


@corruption(
    "brightness",
    (0.05, 0.1, 0.15, 0.2, 0.3),
    "shift (fraction of 255)",
    "every pixel lighter by a fixed amount (the HSV value shift; on grey faces the value is the pixel), clipped at "
    "white",
    rule="intensity",
)
def _brightness(x, shift, gen):
    return x + shift * 255


@corruption(
    "contrast",
    (0.75, 0.5, 0.4, 0.3, 0.15),
    "contrast factor",
    "pixels pulled towards the image's mean per channel: (x − mean)·factor + mean",
    rule="intensity",
)
def _contrast(x, factor, gen):
    mean = x.mean((2, 3), keepdim=True)
    return (x - mean) * factor + mean


@corruption(
    "occlusion_patches",
    (1, 2, 3, 4, 5),
    "black squares of ¼ side (count)",
    "black squares, a quarter of the side each, at random positions (may overlap)",
    rule="ours",
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
    rule="ours",
)
def _occlusion_eyes(x, scale, gen):
    return _box(x, EYES_BOX, scale)


@corruption(
    "occlusion_mouth",
    BOX_SCALES,
    "box scale",
    f"a black box over the mouth: {MOUTH_BOX} (x0, y0, x1, y1 of the face) scaled about its centre",
    rule="ours",
)
def _occlusion_mouth(x, scale, gen):
    return _box(x, MOUTH_BOX, scale)


def format_params(values: tuple[Param, ...]) -> str:
    """Severities 1–5 as a line: ``0.6, 0.9, …`` or ``(9, 1.5), (9, 2.25), …``."""
    one = lambda v: f"({', '.join(f'{x:g}' for x in v)})" if isinstance(v, tuple) else f"{v:g}"  # noqa: E731
    return ", ".join(one(v) for v in values)


def parse_corruptions(text: str) -> tuple[str, ...]:
    """``all`` or ``name,name,…`` → registry names (unknown ones get the registry's did-you-mean error)."""
    names = [n.strip() for n in text.split(",")]
    if names == ["all"]:
        return tuple(CORRUPTIONS.names())
    if not all(names):
        raise ConfigError(f"--corruptions {text!r}: an empty name; give `all` or names separated by single commas, "
                          "e.g. --corruptions gaussian_noise,jpeg.")  # fmt: skip
    found = tuple(CORRUPTIONS.get(n).name for n in names)
    if len(set(found)) != len(found):
        raise ConfigError(f"--corruptions {text!r}: a corruption named twice; list each once.")
    return found


def parse_severities(text: str) -> tuple[int, ...]:
    """``1,2,3`` → (1, 2, 3), each in 1–5, each once."""
    try:
        values = tuple(int(v) for v in text.split(","))  # an empty item fails here: a slip, never a request
    except ValueError:
        values = ()
    if not values or any(v not in SEVERITIES for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"--severities {text!r}: expected distinct values from 1–5, e.g. --severities 1,3,5.")
    return values
