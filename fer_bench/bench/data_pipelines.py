"""The two data paths that `fer-bench bench --data` times, doing the same work: this tool's in-memory uint8 store with
batched augmentation, and ``ImageFolder`` + PIL ``transforms`` + ``DataLoader``; and the check that their operations
match (:func:`same_work`), so that a speed-up is never reported over different work.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from fer_bench.bench.timing import proc_cpu_s, proc_runnable
from fer_bench.data import FerData
from fer_bench.data.augment import BatchAugment, Normalize
from fer_bench.engine.steps import Batches
from fer_bench.models import IMAGENET_MEAN, IMAGENET_STD
from fer_bench.recipes.schema import AugmentCfg

AUG = AugmentCfg()  # the schema's default (full) augmentation; the torchvision pipeline is built from the same values
PREFETCH = 2  # DataLoader's prefetch_factor (its default), batches queued per worker


def torchvision_transform(aug: AugmentCfg = AUG, size: int = 48):
    """PIL transforms doing the work of ``BatchAugment(aug, ...)`` (checked by ``torchvision_ops``), on grey (mode
    "L") images as ``load_grey`` opens them: every PIL op on one channel, three only at the end, as ours does
    (per image about 1.4× faster than the usual ``Grayscale(num_output_channels=3)`` first)."""
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    BILINEAR = InterpolationMode.BILINEAR  # noqa: N806 (as ours samples every geometric op)
    ops = [T.RandomResizedCrop(size, scale=aug.crop_scale, ratio=aug.crop_ratio, interpolation=BILINEAR)]
    ops += [T.RandomHorizontalFlip(aug.hflip)] if aug.hflip else []
    if aug.rotate and aug.translate and aug.rotate_p == aug.translate_p == 1:  # one warp for both, as users write it
        ops += [T.RandomAffine(degrees=aug.rotate, translate=(aug.translate, aug.translate), interpolation=BILINEAR)]
    else:
        for degrees, translate, p in ((aug.rotate, None, aug.rotate_p), (0, aug.translate, aug.translate_p)):
            if (degrees or translate) and p:
                t = T.RandomAffine(degrees=degrees, translate=(translate, translate) if translate else None,
                                   interpolation=BILINEAR)  # fmt: skip
                ops += [t if p == 1 else T.RandomApply([t], p=p)]
    if aug.brightness or aug.contrast:
        ops += [T.ColorJitter(brightness=aug.brightness, contrast=aug.contrast)]
    ops += [T.ToTensor()]
    ops += [T.RandomErasing(p=aug.erase_p, scale=aug.erase_scale)] if aug.erase_p else []
    return T.Compose(ops + [GreyTo3(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class GreyTo3:
    """(1, H, W) → (3, H, W), a view (the torchvision pipeline's last step before normalising)."""

    channels = 3

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(self.channels, -1, -1)

    def __repr__(self) -> str:
        return f"GreyTo3(channels={self.channels})"


def load_grey(path: str):
    """``ImageFolder``'s loader, opening every face as one grey channel."""
    from PIL import Image

    with open(path, "rb") as f:
        return Image.open(f).convert("L")


def torchvision_ops(transform) -> list[tuple[str, tuple]]:
    """The operations of a torchvision ``Compose``, read off its transforms, in ``BatchAugment.ops()``'s terms and
    order. A transform, or a setting of one, that ours has no counterpart for raises ``ValueError`` (shear, scale
    jitter, saturation, hue, a fill, nearest or bicubic sampling…), so the two lists match only for the same work.
    (ColorJitter draws the order of brightness and contrast per image; ours applies brightness first.)"""
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    def refuse(t, why: str):
        raise ValueError(f"torchvision_ops: {type(t).__name__} {why}: the batched augmentation has no such op")

    def bilinear(t) -> str:
        if t.interpolation != InterpolationMode.BILINEAR:
            refuse(t, f"with {t.interpolation.value} sampling")
        return "bilinear"

    ops: list[tuple[str, tuple]] = []
    for t in transform.transforms:
        p = 1.0
        if isinstance(t, T.RandomApply):
            (t,), p = t.transforms, float(t.p)
        if isinstance(t, T.Grayscale | GreyTo3):
            ops.append(("to_channels", (getattr(t, "num_output_channels", getattr(t, "channels", None)),)))
        elif isinstance(t, T.RandomResizedCrop):
            ops.append(("random_resized_crop", (t.size[0], tuple(t.scale), tuple(t.ratio), bilinear(t))))
        elif isinstance(t, T.RandomHorizontalFlip):
            ops.append(("hflip", (t.p,)))
        elif isinstance(t, T.RandomAffine):
            if t.scale is not None or t.shear is not None or (t.fill not in (0, None)) or t.center is not None:
                refuse(t, "with scale, shear, fill or centre")
            if t.degrees[0] != -t.degrees[1]:
                refuse(t, f"with degrees {t.degrees} (ours is symmetric)")
            ops += [("rotate", (float(t.degrees[1]), p, bilinear(t)))] if t.degrees[1] else []
            if t.translate and t.translate[0] != t.translate[1]:
                refuse(t, f"with translate {t.translate} (ours is the same along both axes)")
            ops += [("translate", (float(t.translate[0]), p, bilinear(t)))] if t.translate else []
        elif isinstance(t, T.ColorJitter):
            if t.saturation is not None or t.hue is not None:
                refuse(t, "with saturation or hue")
            ops += [(name, tuple(round(float(v), 6) for v in getattr(t, name))) for name in ("brightness", "contrast")
                    if getattr(t, name)]  # fmt: skip
        elif isinstance(t, T.ToTensor):
            ops.append(("to_float", ()))
        elif isinstance(t, T.RandomErasing):
            ratio = tuple(round(float(r), 4) for r in t.ratio)
            ops.append(("erase", (t.p, tuple(t.scale), ratio, float(t.value))))
        elif isinstance(t, T.Normalize):
            ops.append(("normalize", tuple(tuple(round(float(v), 4) for v in vs) for vs in (t.mean, t.std))))
        else:
            raise ValueError(f"torchvision_ops: no mapping for {type(t).__name__}")
    return ops


def same_work(ours: list[tuple[str, tuple]], theirs: list[tuple[str, tuple]]) -> bool:
    """The same operations with the same settings in the same order; where the uint8 → float conversion happens is
    not compared (ours converts first and samples in float, PIL converts after its ops)."""
    strip = lambda ops: [(name, tuple(args)) for name, args in ops if name != "to_float"]  # noqa: E731
    return strip(ours) == strip(theirs) and sum(n == "to_float" for n, _ in ours) == 1 == sum(
        n == "to_float" for n, _ in theirs
    )


def ours_augment(aug: AugmentCfg = AUG, size: int = 48) -> BatchAugment:
    return BatchAugment(aug, Normalize(size, 3, IMAGENET_MEAN, IMAGENET_STD))


class OursStream:
    """Augmented training batches from the in-memory uint8 store on ``device``, epoch after epoch."""

    def __init__(self, data: FerData, batch_size: int, device: torch.device, aug: AugmentCfg = AUG) -> None:
        idx = data.split_indices("train")
        images = torch.from_numpy(np.ascontiguousarray(data.images[idx])).to(device)
        self.batches = Batches(images, torch.from_numpy(data.labels[idx]).to(device), batch_size=batch_size,
                               shuffle=True)  # fmt: skip
        self.augment, self.device = ours_augment(aug), device
        self.gen = torch.Generator(device).manual_seed(0)
        self.epoch, self.it = 0, self.batches.epoch(0)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return self.augment(*next(self.it), self.gen)
        except StopIteration:
            self.epoch += 1
            self.it = self.batches.epoch(self.epoch)
            return self.next()

    def window(self, n: int) -> float:
        """Batches/s over ``n`` batches."""
        start = time.perf_counter()
        for _ in range(n):
            self.next()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - start)


class TorchvisionStream:
    """``ImageFolder`` + PIL transforms + ``DataLoader`` with persistent workers, kept alive between windows."""

    def __init__(self, train_dir: Path, batch_size: int, workers: int, aug: AugmentCfg = AUG) -> None:
        from torch.utils.data import DataLoader
        from torchvision.datasets import ImageFolder

        self.workers = workers
        ds = ImageFolder(str(train_dir), transform=torchvision_transform(aug), loader=load_grey)
        self.loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                                 persistent_workers=workers > 0,
                                 prefetch_factor=PREFETCH if workers else None)  # fmt: skip
        self.it = iter(self.loader)
        self.rate = None

    def next(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)  # persistent workers: no start-up cost
            return next(self.it)

    def window(self, n: int) -> float:
        """Batches/s over ``n`` batches in the steady state: the batches the workers queued while idle are taken
        untimed first, and after the window we wait for them to refill their queue, so that they neither
        lend this window work done earlier nor take CPU from whatever is timed next."""
        for _ in range(self.workers * PREFETCH):
            self.next()
        start = time.perf_counter()
        for _ in range(n):
            self.next()
        self.rate = n / (time.perf_counter() - start)
        self.wait_idle()
        return self.rate

    def wait_idle(self, poll: float = 0.05, timeout: float = 10.0) -> None:
        """Block until the worker processes stop using CPU (their queue is full): polled from /proc, since a
        fixed sleep is sometimes too short and the workers then steal the cores that the next window times."""
        pids = [w.pid for w in getattr(self.it, "_workers", [])]
        if not pids:
            return
        deadline, last, quiet = time.monotonic() + timeout, None, 0
        while time.monotonic() < deadline and quiet < 3:
            time.sleep(poll)
            now = sum(proc_cpu_s(pid) for pid in pids)
            # idle: used (almost) no CPU since the last poll and none is runnable (one waiting for a core is)
            idle = last is not None and now - last < 0.2 * poll and not any(proc_runnable(p) for p in pids)
            quiet, last = (quiet + 1 if idle else 0), now

    def close(self) -> None:
        self.it = None  # shuts the worker processes down
        self.loader = None
