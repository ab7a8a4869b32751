"""``--shard K/N``: a deterministic share of a suite's cells, by hand or from a SLURM array task."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fer_bench.utils.errors import ConfigError

if TYPE_CHECKING:
    from fer_bench.experiment.suite import Cell


def parse_shard(text: str | None, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``"K/N"`` → (K, N) with 1 ≤ K ≤ N; None → (1, 1); ``"auto"`` → the SLURM array task's share (see
    :func:`slurm_shard`, reading ``env``, default ``os.environ``)."""
    if text is None:
        return 1, 1
    if text == "auto":
        return slurm_shard(os.environ if env is None else env)
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected K/N, e.g. --shard 2/3 (share 2 of 3).") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {text!r}: K must be between 1 and N.")
    return k, n


# What an sbatch array task is told about its array (sbatch(1), "OUTPUT ENVIRONMENT VARIABLES").
SLURM_ARRAY_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
                    "SLURM_ARRAY_TASK_STEP")  # fmt: skip
_SLURM_FIX = "run it as an sbatch array of a range (#SBATCH --array=0-3 or 1-7:2), or give --shard K/N by hand"


def slurm_shard(env: Mapping[str, str]) -> tuple[int, int]:
    """``--shard auto``: (K, N) of this SLURM array task, 1-based, from the array variables in ``env``.

    An array ``--array=MIN-MAX:STEP`` has COUNT = (MAX − MIN) / STEP + 1 tasks; task ID takes share
    (ID − MIN) / STEP + 1 of COUNT, so arrays from 0, from 1 or with a step all cover every share once.
    A list that is not one range (``--array=0,3,7``) has no such numbering and is refused.

    Example:
        >>> slurm_shard({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1",
        ...              "SLURM_ARRAY_TASK_MAX": "7", "SLURM_ARRAY_TASK_STEP": "2"})
        (3, 4)
    """
    missing = [v for v in SLURM_ARRAY_VARS if not env.get(v, "").strip()]
    if missing:
        raise ConfigError(f"--shard auto: {', '.join(missing)} not set (this is not a SLURM array task); {_SLURM_FIX}.")
    got = {}
    for var in SLURM_ARRAY_VARS:
        try:
            got[var.removeprefix("SLURM_ARRAY_TASK_")] = int(env[var])
        except ValueError:
            raise ConfigError(f"--shard auto: {var}={env[var]!r} is not an integer; {_SLURM_FIX}.") from None
    tid, count, lo, hi, step = (got[k] for k in ("ID", "COUNT", "MIN", "MAX", "STEP"))
    state = f"ID={tid}, COUNT={count}, MIN={lo}, MAX={hi}, STEP={step}"
    if step < 1 or hi < lo or (hi - lo) % step or (hi - lo) // step + 1 != count:
        raise ConfigError(f"--shard auto: the SLURM array variables ({state}) do not describe one range MIN-MAX:STEP "
                          f"of COUNT tasks; {_SLURM_FIX}.")  # fmt: skip
    if not lo <= tid <= hi or (tid - lo) % step:
        raise ConfigError(f"--shard auto: SLURM_ARRAY_TASK_ID={tid} is not a task of the array ({state}); "
                          f"{_SLURM_FIX}.")  # fmt: skip
    return (tid - lo) // step + 1, count


def shard(all_cells: list[Cell], k: int, n: int) -> list[Cell]:
    """Share ``k`` of ``n`` (1-based): every n-th cell of the id-sorted list, so shards never overlap."""
    return [c for i, c in enumerate(all_cells) if i % n == k - 1]
