"""The data-path benchmark (`fer-bench bench --data`): this tool's in-memory batched path against torchvision.

Measured in one process on one machine: augmented training batches/s of the in-memory uint8 store +
batched augmentation against ``ImageFolder`` + PIL ``transforms`` + ``DataLoader`` with the same ops
(best worker count); CSV load time cold and cached; and end-to-end ÷ model-only training img/s.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_bench.data import FerData, load_dataset
from fer_bench.data.augment import BatchAugment, Normalize
from fer_bench.data.labels import SPLITS
from fer_bench.engine import Batches
from fer_bench.models import IMAGENET_MEAN, IMAGENET_STD
from fer_bench.recipes.schema import AugmentCfg

AUG = AugmentCfg()  # the baseline recipe's augmentation, mirrored op for op by the torchvision pipeline


def torchvision_transform(size: int = 48):
    from torchvision import transforms as T

    return T.Compose([
        T.Grayscale(num_output_channels=3),
        T.RandomResizedCrop(size, scale=AUG.crop_scale, ratio=AUG.crop_ratio),
        T.RandomHorizontalFlip(AUG.hflip),
        T.RandomAffine(degrees=AUG.rotate, translate=(AUG.translate, AUG.translate)),
        T.ColorJitter(brightness=AUG.brightness, contrast=AUG.contrast),
        T.ToTensor(),
        T.RandomErasing(p=AUG.erase_p, scale=AUG.erase_scale),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])  # fmt: skip


def torchvision_batches_per_s(train_dir: Path, batch_size: int, workers: int, n_batches: int) -> float:
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(train_dir), transform=torchvision_transform())
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)  # fmt: skip
    it = iter(loader)
    for _ in range(2):  # warm-up: worker start-up and first file reads
        next(it)
    start = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return n_batches / (time.perf_counter() - start)


def ours_batches_per_s(data: FerData, batch_size: int, n_batches: int, device: torch.device) -> float:
    idx = data.split_indices("train")
    images = torch.from_numpy(np.ascontiguousarray(data.images[idx])).to(device)
    batches = Batches(images, torch.from_numpy(data.labels[idx]).to(device), batch_size=batch_size, shuffle=True)
    augment = BatchAugment(AUG, Normalize(48, 3, IMAGENET_MEAN, IMAGENET_STD))
    gen = torch.Generator(device).manual_seed(0)
    it = batches.epoch(0)
    for _ in range(2):
        augment(*next(it), gen)
    start = time.perf_counter()
    for _ in range(n_batches):
        x, y = augment(*next(it), gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_batches / (time.perf_counter() - start)


def write_fer2013_csv(data: FerData, path: Path) -> None:
    """Write the original `emotion,pixels,Usage` format (used to time the CSV reader on real pixels)."""
    usage = {0: "Training", 1: "PublicTest", 2: "PrivateTest", 3: "PublicTest"}
    text = np.array([str(v) for v in range(256)], dtype=object)  # one str per pixel value, looked up by index
    with path.open("w") as f:
        f.write("emotion,pixels,Usage\n")
        for img, label, split in zip(data.images, data.labels, data.splits, strict=True):
            f.write(f"{label},{' '.join(text[img.ravel()])},{usage[int(split)]}\n")


def csv_load_times(csv_path: Path, repeats: int = 3) -> dict[str, float]:
    cold, cached = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            load_dataset("fer2013", csv_path, cache)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            load_dataset("fer2013", csv_path, cache)
            cached.append(time.perf_counter() - start)
    return {"csv_cold_s": round(min(cold), 3), "csv_cached_s": round(min(cached), 3),
            "csv_cold_s_median": round(statistics.median(cold), 3),
            "csv_cached_s_median": round(statistics.median(cached), 3)}  # fmt: skip


def e2e_over_model_only(data: FerData, model_name: str, batch_size: int, steps: int, rounds: int = 3) -> dict:
    """Training img/s of resnet18 (48 px) fed by the real data path, over the same model fed a fixed batch."""
    from fer_bench.models import create_model

    torch.manual_seed(0)
    model, spec = create_model(model_name)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    idx = data.split_indices("train")
    batches = Batches(torch.from_numpy(np.ascontiguousarray(data.images[idx])), torch.from_numpy(data.labels[idx]),
                      batch_size=batch_size, shuffle=True)  # fmt: skip
    augment = BatchAugment(AUG, Normalize(48, spec.in_chans, spec.mean, spec.std))
    gen = torch.Generator().manual_seed(0)
    fixed = augment(*next(batches.epoch(0)), gen)

    def step(x, y):
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(feed) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step(*feed())
        return steps * batch_size / (time.perf_counter() - start)

    model.train()
    step(*fixed)  # warm-up
    model_only, e2e = [], []
    for r in range(rounds):  # interleaved, so drift in machine speed hits both alike
        model_only.append(timed(lambda: fixed))
        it = batches.epoch(r + 1)
        e2e.append(timed(lambda it=it: augment(*next(it), gen)))
    mo, ee = statistics.median(model_only), statistics.median(e2e)
    return {"model_only_train_img_s": round(mo, 1), "e2e_train_img_s": round(ee, 1),
            "e2e_over_model_only": round(ee / mo, 4)}  # fmt: skip


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


def run_data_bench(data_dir: Path | None, out_dir: Path, *, batch_size: int = 256, n_batches: int = 30,
                   e2e_steps: int = 8) -> dict[str, Any]:  # fmt: skip
    """All figures of the fast-data issue, written to ``out_dir/data-bench-<device>.json``."""
    from fer_bench import provenance

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = load_dataset("fer2013", data_dir, tmp_path / "cache") if data_dir else load_dataset("synthetic")
        train_dir = data_dir / "train" if data_dir and (data_dir / "train").is_dir() else _write_tree(data, tmp_path)
        cpu = torch.device("cpu")
        ours = ours_batches_per_s(data, batch_size, n_batches, cpu)
        tv = {w: torchvision_batches_per_s(train_dir, batch_size, w, max(4, n_batches // 5))
              for w in sorted({0, 1, os.cpu_count() or 1})}  # fmt: skip
        best_w = max(tv, key=tv.get)
        write_fer2013_csv(data, tmp_path / "fer2013.csv")
        csv = csv_load_times(tmp_path / "fer2013.csv")
        e2e = e2e_over_model_only(data, "resnet18", 64, e2e_steps)
        save_augment_grid(data, out_dir / "augment-grid.png")
    result = {
        "speedup_vs_torchvision": round(ours / tv[best_w], 2),
        "e2e_over_model_only": e2e["e2e_over_model_only"],
        "ours_batches_per_s": round(ours, 2),
        "torchvision_batches_per_s": round(tv[best_w], 2),
        "torchvision_best_workers": best_w,
        "torchvision_batches_per_s_by_workers": {str(w): round(v, 2) for w, v in tv.items()},
        **csv, **e2e,
        "conditions": {"batch_size": batch_size, "img_size": 48, "augmentation": "flip, random resized crop, "
                       "rotation, translation, brightness, contrast, random erasing, grey->3ch, normalise",
                       "e2e_model": "resnet18", "e2e_batch_size": 64, "dataset": data.source,
                       "n_csv_rows": int(len(data)), "device": provenance.device_name(cpu),
                       "cpu_count": os.cpu_count(), "git_sha": provenance.git_sha(), **provenance.versions()},
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
