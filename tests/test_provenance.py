"""Review of issue 13: a CPU row names the CPU's model, so two CPU models never share a leaderboard line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fer_bench.utils import provenance

XEON = "model name\t: Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz"
EPYC = "model name\t: AMD EPYC 7763 64-Core Processor"


@pytest.fixture
def cpuinfo(monkeypatch):
    """Set what /proc/cpuinfo holds (the model name is cached per process: cleared around each use)."""

    def use(text: str) -> str:
        lines = f"processor\t: 0\nvendor_id\t: x\n{text}\nflags\t: a\n"
        monkeypatch.setattr(provenance, "_read_cpuinfo", lambda: lines)
        provenance.cpu_model.cache_clear()
        return provenance.device_name(torch.device("cpu"))

    yield use
    provenance.cpu_model.cache_clear()


def test_two_cpu_models_get_two_device_names(cpuinfo):
    xeon, epyc = cpuinfo(XEON), cpuinfo(EPYC)
    assert xeon != epyc
    assert xeon == f"Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz ({torch.get_num_threads()} threads)"
    assert epyc.startswith("AMD EPYC 7763 64-Core Processor (")


def test_without_a_model_name_line_the_platform_name_is_used(cpuinfo, monkeypatch):
    monkeypatch.setattr(provenance.platform, "processor", lambda: "")
    monkeypatch.setattr(provenance.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(provenance.platform, "system", lambda: "Linux")
    assert cpuinfo("CPU part\t: 0xd0c") == f"aarch64 ({torch.get_num_threads()} threads)"


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="Linux only: reads /proc/cpuinfo")
def test_the_real_cpuinfo_model_name_is_on_the_row():
    lines = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.split(":")[0].strip() == "model name"]
    if not lines:
        pytest.skip("this kernel's /proc/cpuinfo has no model name line")
    name = provenance.device_name(torch.device("cpu"))  # the cpuinfo fixture clears its cache when it ends
    assert name.startswith(" ".join(lines[0].partition(":")[2].split()) + " (")
