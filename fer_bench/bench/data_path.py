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

from fer_bench.bench.data_pipelines import (
    AUG,
    OursStream,
    TorchvisionStream,
    ours_augment,
    same_work,
    torchvision_ops,
    torchvision_transform,
)
from fer_bench.bench.timing import MachineLoad, paired
from fer_bench.data import FerData, load_dataset
from fer_bench.data.augment import BatchAugment, Normalize
from fer_bench.data.csv import write_fer2013_csv
from fer_bench.data.labels import SPLITS
from fer_bench.utils.errors import ConfigError


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
