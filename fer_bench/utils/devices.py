"""The GPUs and cores this process may hand out: `--gpus` checked against what is visible, the CPU affinity."""

from __future__ import annotations

import os
from collections.abc import Sequence

from fer_bench.utils.errors import ConfigError


def parse_gpus(text: str, visible: Sequence[str]) -> list[str]:
    """``--gpus 0,1`` → ``["0", "1"]``: distinct entries of ``visible`` (the ids this process may hand out)."""
    gpus = [g.strip() for g in text.split(",")]
    if not all(gpus) or len(set(gpus)) != len(gpus):
        raise ConfigError(f"--gpus {text!r}: expected distinct GPU ids separated by commas, e.g. --gpus 0,1.")
    if not visible:
        raise ConfigError(f"--gpus {text}: torch sees no CUDA device here; drop --gpus (jobs then share the CPU).")
    if bad := [g for g in gpus if g not in visible]:
        raise ConfigError(f"--gpus {text}: {', '.join(bad)} not among the visible GPUs ({', '.join(visible)}); "
                          f"pick from those.")  # fmt: skip
    return gpus


def visible_gpus() -> list[str]:
    """The GPU ids a job may be given: this process's ``CUDA_VISIBLE_DEVICES`` entries, else 0 … count-1."""
    import torch

    count = torch.cuda.device_count()  # NOTE: counts without creating a CUDA context in this process
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # a job's CUDA_VISIBLE_DEVICES names the ids this one names, not 0…n-1
        return [g.strip() for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()][:count]
    return [str(i) for i in range(count)]


def job_gpus(gpus: str | None, device: str) -> list[str]:
    """The GPUs the job slots take in turn: ``--gpus`` checked against what is visible, else every visible one.

    None of them with ``--device cpu`` (jobs share the cores) and for a machine without CUDA.
    """
    if gpus is not None and not gpus.strip():
        raise ConfigError("--gpus is empty; give GPU ids such as --gpus 0,1, or leave it out for every visible GPU.")
    if device.startswith("cuda:"):
        raise ConfigError(f"--device {device} with --jobs: each job sees only its own GPU; "
                          f"pick them with --gpus {device.removeprefix('cuda:')} instead.")  # fmt: skip
    if device == "cpu":
        if gpus:
            raise ConfigError(f"--gpus {gpus} with --device cpu: drop one of them (on CPU the jobs share the cores).")
        return []
    visible = visible_gpus()
    return parse_gpus(gpus, visible) if gpus else visible


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
