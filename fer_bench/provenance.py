"""Where a number came from: code version, libraries, hardware."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import torch

import fer_bench


@functools.cache
def git_sha() -> str:
    """The checkout's commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git.

    ``$FER_BENCH_GIT_SHA`` names the commit where the code runs from a copy without ``.git`` (a cluster job, a
    container): the copy cannot tell its own commit.
    """
    if env := os.environ.get("FER_BENCH_GIT_SHA"):
        return env
    root = Path(fer_bench.__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    import numpy
    import timm

    return {
        "fer_bench": fer_bench.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
    }
