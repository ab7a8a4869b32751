"""Datasets: one module each (``fer_bench/data/<name>.py``) registers a reader that builds a :class:`FerData`.

``fer-bench ls datasets`` lists them; :func:`load_dataset` loads one by name (``name`` or ``name:key=value,…``).
Adding a dataset touches its module, the import line below and its test fixture.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fer_bench.data import cache
from fer_bench.data.base import EVAL_SPLITS, FerData, stratified_split, stratified_subset
from fer_bench.data.spec import DATASETS, DatasetSpec, run_name, split_name
from fer_bench.utils.errors import DataError

# Each import registers its dataset (fer_bench.data.spec.register).
from fer_bench.data import fer2013, ferplus, folder, rafdb, synthetic  # noqa: E402, F401  isort: skip

__all__ = [
    "DATASETS", "EVAL_SPLITS", "DatasetSpec", "FerData", "load_dataset", "stratified_split", "stratified_subset",
]  # fmt: skip


def load_dataset(name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None) -> FerData:
    """Load a registered dataset into memory (decoding once, then from the cache).

    ``name`` may carry options: ``ferplus:labels=crossentropy``, ``folder:classes=angry+happy``.

    Example:
        >>> data = load_dataset("synthetic")
        >>> data.images.shape[1:], data.classes[0]
        ((48, 48), 'angry')
    """
    base, text = split_name(name)
    spec = DATASETS.get(base)
    options = spec.parse_options(text)
    root = Path(data_dir).expanduser() if data_dir is not None else None
    if spec.needs_data_dir and root is None:
        raise DataError(f"--dataset {base} needs --data-dir PATH. {spec.get}")
    if root is not None and not root.exists():
        raise DataError(f"data dir {str(root)!r} does not exist (looked at {root.resolve()}). {spec.get}")
    if root is not None and not root.is_dir() and not spec.reads_file:
        raise DataError(f"--data-dir {root}: a file, but --dataset {base} reads a folder. {spec.get}")
    data = spec.reader(root, Path(cache_dir) if cache_dir else cache.default_cache_dir(), options)
    wanted = run_name(spec, options)
    return data if data.name == wanted else replace(data, name=wanted)
