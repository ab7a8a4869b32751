"""Where a number came from: code version, libraries, hardware."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import torch

from fer_bench.utils.version import __version__


@functools.cache
def git_sha() -> str:
    """The checkout's commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git.

    ``$FER_BENCH_GIT_SHA`` names the commit where the code runs from a copy without ``.git`` (a cluster job, a
    container): the copy cannot tell its own commit.
    """
    if env := os.environ.get("FER_BENCH_GIT_SHA"):
        return env
    root = Path(__file__).resolve().parents[2]  # the checkout: fer_bench/utils/ is two below
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def device_name(device: torch.device) -> str:
    """The device's model name, a leaderboard grouping key: a GPU's name, or the CPU's model and thread count.

    NOTE: a CPU is named by its model ("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz"), not its architecture
    ("x86_64"): two CPU models must never share a leaderboard line.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


@functools.cache
def cpu_model() -> str:
    """The CPU's model name: Linux's /proc/cpuinfo, macOS's sysctl, else what ``platform`` knows (may be generic)."""
    return _cpuinfo_model(_read_cpuinfo()) or _sysctl_cpu_brand() or platform.processor() or platform.machine()


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo_model(text: str) -> str | None:
    """The first "model name" line's value (x86; ARM kernels may have none, or "Hardware"/"CPU part" instead)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name" and value.strip():
            return " ".join(value.split())
    return None


def _sysctl_cpu_brand() -> str | None:
    if platform.system() != "Darwin":
        return None
    try:
        res = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None


def tf32(device: torch.device) -> dict[str, bool]:
    """Whether fp32 matrix multiplies and cuDNN convolutions on ``device`` may run as TF32 (10-bit mantissa).

    NOTE: torch lets cuDNN convolutions use TF32 by default (``torch.backends.cudnn.allow_tf32``), so an "fp32"
    run on an Ampere-or-newer GPU convolves at TF32 unless switched off; rows record it beside ``precision``.
    TF32 exists only on CUDA devices of compute capability 8 or more; on a CPU both are false.
    """
    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] < 8:
        return {"matmul": False, "cudnn": False}
    b = torch.backends
    matmul = _fp32_precision([getattr(b.cuda, "matmul", None), b])
    conv = _fp32_precision([getattr(b.cudnn, "conv", None), b.cudnn, b])
    return {
        "matmul": matmul == "tf32" if matmul else torch.get_float32_matmul_precision() != "highest",
        "cudnn": bool(b.cudnn.enabled) and (conv == "tf32" if conv else bool(b.cudnn.allow_tf32)),
    }


def _fp32_precision(scopes: list) -> str | None:
    """The first set ``fp32_precision`` ("tf32"/"ieee") of torch's newer TF32 API, innermost scope first.

    None where torch predates that API or nothing is set ("none" inherits): the legacy flags decide then. NOTE: newer
    torch refuses to read the legacy ``allow_tf32`` once the two APIs are mixed, so the new one is read first.
    """
    for scope in scopes:
        value = getattr(scope, "fp32_precision", None)
        if value not in (None, "none"):
            return value
    return None


def versions() -> dict[str, str]:
    import numpy
    import timm

    return {
        "fer_bench": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
    }
