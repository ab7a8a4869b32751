"""Checks of a run's device and data options, made before anything loads (the CLI and the Python API share them)."""

from __future__ import annotations

from pathlib import Path

from fer_bench.utils.errors import ConfigError


def check_device(name: str) -> None:
    """--device cuda/cuda:N/mps that this machine does not have: one line now, before any data loads (torch is
    imported only for those names)."""

    if name.startswith("cuda"):
        from fer_bench.engine.builders import resolve_device

        resolve_device(name)  # no CUDA at all: its one line
        import torch

        if int(name.partition(":")[2] or 0) >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s). Use cuda:0 "
                              "or auto.")  # fmt: skip
    elif name == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ConfigError("--device mps asked for, but torch sees no MPS device. Use --device cpu or auto.")


def check_data_args(dataset: str | None, data_dir: str | Path | None, split: str | None = None) -> None:
    """--dataset NAME[:options], --data-dir and --split checked against the dataset's spec, before anything loads.

    Raises:
        ConfigError: unknown dataset or option, an option value of the wrong type or range, a missing data dir,
            or a split the dataset does not have.
    """
    from fer_bench.data.spec import DATASETS, split_name

    spec = None
    if dataset is not None:  # None: a suite's own dataset, checked when the suite is read
        name, options = split_name(dataset)
        spec = DATASETS.get(name)
        spec.parse_options(options)
    if data_dir is not None and not Path(data_dir).expanduser().exists():
        raise ConfigError(f"--data-dir {data_dir}: does not exist. {spec.get if spec else ''}".rstrip())
    if spec is not None and split in ("public", "private") and split not in spec.splits:
        have = ", ".join(f"{ours} ({theirs})" for ours, theirs in spec.splits.items())
        raise ConfigError(f"--split {split}: {spec.name} has no {split} split (its splits: {have}). Use --split test.")
