"""The data-path benchmark (`fer-bench bench --data`): this tool's in-memory batched path against torchvision.

Measured in one process on one machine: augmented training batches/s of the in-memory uint8 store +
batched augmentation against ``ImageFolder`` + PIL ``transforms`` + ``DataLoader`` with the same ops
(best worker count); CSV load time cold and cached; and end-to-end ÷ model-only training img/s.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_bench.bench.timing import MachineLoad, paired, proc_cpu_s, proc_runnable
from fer_bench.data import FerData, load_dataset
from fer_bench.data.augment import BatchAugment, Normalize
from fer_bench.data.labels import SPLITS
from fer_bench.engine.steps import Batches
from fer_bench.models import IMAGENET_MEAN, IMAGENET_STD
from fer_bench.recipes.schema import AugmentCfg
from fer_bench.utils.errors import ConfigError

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


def warm_file_cache(root: Path) -> int:
    """Read every file under ``root`` once, so that no timed window pays for a first disk read."""
    return sum(len(f.read_bytes()) for f in root.rglob("*") if f.is_file())


def data_path_vs_torchvision(data: FerData, train_dir: Path, *, batch_size: int = 256, pairs: int = 7,
                             ours_batches: int = 60, tv_batches: int = 15, workers: tuple[int, ...] | None = None,
                             progress=None) -> dict[str, Any]:  # fmt: skip
    """Batches/s of ours and of torchvision, measured alternately. In every pair torchvision runs once with each
    worker count (0, 1 and the core count) and counts with its fastest, so a noisy choice made once can never
    leave it weaker than it is (if anything, the max of three noisy windows favours it)."""
    warm_file_cache(train_dir)
    workers = workers or tuple(sorted({0, 1, os.cpu_count() or 1}))
    ours = OursStream(data, batch_size, torch.device("cpu"))
    streams = {w: TorchvisionStream(train_dir, batch_size, w) for w in workers}
    by_workers: list[dict[int, float]] = []

    def torchvision_best() -> float:
        by_workers.append({w: s.window(tv_batches) for w, s in streams.items()})
        return max(by_workers[-1].values())

    try:
        result = paired(lambda: ours.window(ours_batches), torchvision_best, pairs=pairs,
                        names=("ours_batches_per_s", "torchvision_batches_per_s"), progress=progress)  # fmt: skip
    finally:
        for s in streams.values():
            s.close()
    kept = by_workers[-pairs:]  # the warm-up pair's windows are not kept
    best = [max(r, key=r.get) for r in kept]
    return result | {"torchvision_best_workers": max(set(best), key=best.count),
                     "torchvision_best_workers_by_pair": best, "ours_batches_per_window": ours_batches,
                     "torchvision_batches_per_window": tv_batches,
                     "torchvision_batches_per_s_by_workers": {str(w): [round(r[w], 3) for r in kept]
                                                              for w in workers}}  # fmt: skip


def write_fer2013_csv(data: FerData, path: Path) -> None:
    """Write the original `emotion,pixels,Usage` format (used to time the CSV reader on real pixels)."""
    usage = {0: "Training", 1: "PublicTest", 2: "PrivateTest", 3: "PublicTest"}
    text = np.array([str(v) for v in range(256)], dtype=object)  # one str per pixel value, looked up by index
    with path.open("w") as f:
        f.write("emotion,pixels,Usage\n")
        for img, label, split in zip(data.images, data.labels, data.splits, strict=True):
            f.write(f"{label},{' '.join(text[img.ravel()])},{usage[int(split)]}\n")


def csv_load_times(csv_path: Path, pairs: int = 5, progress=None) -> dict[str, Any]:
    """Seconds to load ``csv_path`` and read every pixel: cold (empty cache folder: parse and write the cache) and
    cached (the same folder again), alternately."""
    state: dict[str, Any] = {}

    def load() -> float:  # until every pixel has been read: a cached load only maps the file in
        start = time.perf_counter()
        data = load_dataset("fer2013", csv_path, state["tmp"].name)
        int(data.images.sum(dtype=np.uint64))
        return time.perf_counter() - start

    def cold() -> float:
        if "tmp" in state:
            state["tmp"].cleanup()
        state["tmp"] = tempfile.TemporaryDirectory()
        return load()

    try:
        return paired(cold, load, pairs=pairs, names=("csv_cold_s", "csv_cached_s"), progress=progress)
    finally:
        state["tmp"].cleanup()


def e2e_over_model_only(data: FerData, model_name: str = "resnet18", batch_size: int = 64, steps: int = 1,
                        pairs: int = 61, progress=None) -> dict[str, Any]:  # fmt: skip
    """Training img/s of ``model_name`` at 48 px fed by the real data path (uint8 store + the default augmentation)
    over the same steps fed one fixed batch, in alternate windows of ``steps`` steps. Short windows and many pairs:
    on a shared 2-core machine the speed drifts by ±10-20 % between windows a few seconds apart, and the step-by-step
    ratio is what stays steady."""
    from fer_bench.models import create_model

    torch.manual_seed(0)
    model, spec = create_model(model_name)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    stream = OursStream(data, batch_size, torch.device("cpu"))
    stream.augment = BatchAugment(AUG, Normalize(48, spec.in_chans, spec.mean, spec.std))
    fixed = stream.next()

    def step(x, y):
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def window(feed) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step(*feed())
        return steps * batch_size / (time.perf_counter() - start)

    model.train()
    step(*fixed)
    return paired(lambda: window(stream.next), lambda: window(lambda: fixed), pairs=pairs,
                  names=("e2e_train_img_s", "model_only_train_img_s"), progress=progress)  # fmt: skip


def save_augment_grid(data: FerData, path: Path, n: int = 8, rows: int = 6) -> None:
    """First row: originals; then ``rows`` independently augmented versions of each (seeded)."""
    from PIL import Image

    idx = data.split_indices("train")[:: max(1, len(data.split_indices("train")) // n)][:n]
    x = torch.from_numpy(np.ascontiguousarray(data.images[idx]))
    augment = BatchAugment(AUG, Normalize(48, 1, (0.0,), (1.0,)))
    gen = torch.Generator().manual_seed(0)
    grid = [x.float() / 255] + [augment(x, torch.zeros(len(x), dtype=torch.long), gen)[0][:, 0] for _ in range(rows)]
    img = torch.cat([torch.cat(list(r), 1) for r in grid], 0).clamp(0, 1).mul(255).byte().numpy()
    Image.fromarray(img).resize((img.shape[1] * 3, img.shape[0] * 3), Image.NEAREST).save(path)


def run_data_bench(data_dir: Path | None, out_dir: Path, *, batch_size: int = 256, pairs: int = 7,
                   ours_batches: int = 60, tv_batches: int = 15, csv_pairs: int = 5, e2e_steps: int = 1,
                   e2e_pairs: int = 61, e2e_model: str = "resnet18", progress=None) -> dict[str, Any]:  # fmt: skip
    """Every figure of the data-path benchmark, each side of each ratio measured alternately."""
    from fer_bench.utils import provenance

    say = progress or (lambda msg: None)
    for name, value in (
        ("batch size", batch_size),
        ("pairs", pairs),
        ("CSV pairs", csv_pairs),
        ("end-to-end pairs", e2e_pairs),
        ("end-to-end steps", e2e_steps),
        ("batches per window (ours)", ours_batches),
        ("batches per window (torchvision)", tv_batches),
    ):
        if value < (5 if "pairs" in name else 1):
            raise ConfigError(f"bench --data: {name} {value}: must be at least {5 if 'pairs' in name else 1}.")
    tv_ops = torchvision_ops(torchvision_transform())
    if not same_work(ours_augment().ops(), tv_ops):  # never time, let alone report, a speed-up over different work
        raise AssertionError(f"the two pipelines differ: {ours_augment().ops()} vs {tv_ops}")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with tempfile.TemporaryDirectory() as tmp, MachineLoad() as load:
        tmp_path = Path(tmp)
        data = load_dataset("fer2013", data_dir, tmp_path / "cache") if data_dir else load_dataset("synthetic")
        n_train = len(data.split_indices("train"))
        if batch_size > n_train:
            raise ConfigError(f"bench --data: batch size {batch_size} is larger than the {n_train} training images "
                              f"of {data.source}; pass a smaller --data-batch-size.")  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        train_dir = data_dir / "train" if data_dir and (data_dir / "train").is_dir() else _write_tree(data, tmp_path)
        say(f"data path vs torchvision: batch {batch_size}, {pairs} pairs")
        speed = data_path_vs_torchvision(data, train_dir, batch_size=batch_size, pairs=pairs,
                                         ours_batches=ours_batches, tv_batches=tv_batches, progress=say)  # fmt: skip
        say(f"CSV load, cold and cached: {csv_pairs} pairs")
        write_fer2013_csv(data, tmp_path / "fer2013.csv")
        csv = csv_load_times(tmp_path / "fer2013.csv", pairs=csv_pairs, progress=say)
        say(f"end-to-end vs model-only training ({e2e_model}, batch 64): {e2e_pairs} pairs of {e2e_steps} step(s)")
        e2e = e2e_over_model_only(data, e2e_model, 64, e2e_steps, pairs=e2e_pairs, progress=say)
        save_augment_grid(data, out_dir / "augment-grid.png")
    result = {
        "speedup_vs_torchvision": speed["ratio"]["median"],
        "speedup_vs_torchvision_iqr": speed["ratio"]["iqr"],
        "csv_cold_s": csv["csv_cold_s"]["median"],
        "csv_cached_s": csv["csv_cached_s"]["median"],
        "e2e_over_model_only": e2e["ratio"]["median"],
        "e2e_over_model_only_iqr": e2e["ratio"]["iqr"],
        "data_path_vs_torchvision": speed,
        "csv_load": csv,
        "e2e_vs_model_only": e2e,
        "ops": [list(op) for op in ours_augment().ops()],
        "torchvision_ops": [list(op) for op in tv_ops],
        "conditions": {"batch_size": batch_size, "img_size": 48, "augmentation": "the schema default (AugmentCfg())",
                       "method": "each ratio from alternate windows A B A B ... after one warm-up pair; medians and "
                                 "IQRs of each side and of the pair-by-pair ratio",
                       "e2e_model": e2e_model, "e2e_batch_size": 64, "e2e_steps_per_window": e2e_steps,
                       "dataset": data.source, "n_csv_rows": int(len(data)),
                       "device": provenance.device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
                       "git_sha": provenance.git_sha(), **provenance.versions(), "started": started,
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(), **load.conditions},
    }  # fmt: skip
    return result


def _write_tree(data: FerData, root: Path) -> Path:
    """An ImageFolder copy of the training images (when the source is not a folder tree)."""
    from PIL import Image

    for i in data.split_indices("train"):
        d = root / "train" / data.classes[data.labels[i]]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i]).save(d / f"{SPLITS[0]}_{i}.png")
    return root / "train"
