"""The CPU settings rule: `precision: auto` and `channels_last: null` resolve from the processor's capability facts
(a fake processor here: the probe is monkeypatched) and from what a committed grid measured."""

from __future__ import annotations

import pytest
import torch

from fer_bench.engine.builders import resolve_channels_last, resolve_precision
from fer_bench.utils import cpu_caps
from fer_bench.utils.cpu_caps import CpuCaps, GridFacts, cpu_choice

AVX2 = CpuCaps(frozenset({"avx", "avx2", "fma"}), "AVX2", 2, "fake AVX2")
AVX512_BF16 = CpuCaps(frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}), "AVX512", 2, "fake bf16")
AMX = CpuCaps(frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}), "AVX512", 2, "fake AMX")
CPU = torch.device("cpu")


@pytest.fixture
def processor(monkeypatch):
    def use(caps: CpuCaps, measured: dict[str, GridFacts] | None = None) -> None:
        monkeypatch.setattr(cpu_caps, "probe", lambda: caps)
        monkeypatch.setattr(cpu_caps, "MEASURED", measured or {})

    return use


def test_auto_without_bf16_instructions_is_fp32(processor):
    processor(AVX2)
    assert resolve_precision("auto", CPU) == ("fp32", None)
    assert resolve_channels_last(None, CPU) is False


@pytest.mark.parametrize("caps", [AVX512_BF16, AMX])
def test_auto_with_bf16_instructions_is_the_rules_choice(processor, caps):
    processor(caps)  # instructions alone: nothing measured, nothing shown for accuracy -> fp32, NCHW
    assert resolve_precision("auto", CPU) == ("fp32", None)
    assert resolve_channels_last(None, CPU) is False
    cls = caps.processor_class
    processor(caps, {cls: GridFacts("results/x", amp_bf16=1.4)})  # faster, accuracy not yet checked
    assert resolve_precision("auto", CPU) == ("fp32", None)
    processor(caps, {cls: GridFacts("results/x", amp_bf16=1.4, bf16_accuracy_ok=True)})
    assert resolve_precision("auto", CPU) == ("amp_bf16", torch.bfloat16)
    processor(caps, {cls: GridFacts("results/x", amp_bf16=1.02, bf16_accuracy_ok=True)})  # below the 1.05x bar
    assert resolve_precision("auto", CPU) == ("fp32", None)


def test_channels_last_follows_the_committed_grid(processor):
    grid = GridFacts("results/x", amp_bf16=1.35, bf16_accuracy_ok=True, channels_last={"amp_bf16": 1.08, "fp32": 1.02})
    processor(AVX512_BF16, {"avx512_bf16": grid})
    assert resolve_precision("auto", CPU)[0] == "amp_bf16" and resolve_channels_last(None, CPU) is True
    processor(AVX2, {"avx2": GridFacts("results/x", channels_last={"fp32": 1.04})})
    assert resolve_channels_last(None, CPU) is False  # below the 1.05x bar
    processor(AVX2, {"avx2": GridFacts("results/x", channels_last={"fp32": 1.11})})
    assert resolve_channels_last(None, CPU) is True


def test_explicit_settings_are_kept(processor):
    processor(AVX512_BF16, {"avx512_bf16": GridFacts("r", channels_last={"amp_bf16": 1.3})})
    assert resolve_precision("fp32", CPU) == ("fp32", None)
    assert resolve_precision("amp_bf16", CPU) == ("amp_bf16", torch.bfloat16)
    assert resolve_channels_last(False, CPU) is False
    processor(AVX2)
    assert resolve_channels_last(True, CPU) is True


def test_rule_details():
    slower = {"avx512_bf16": GridFacts("r", amp_bf16=0.9, channels_last={"fp32": 1.2}, compile={"fp32": 1.3})}
    choice = cpu_choice(AVX512_BF16, slower)
    assert (choice.precision, choice.channels_last, choice.compile) == ("fp32", True, "default")
    assert "0.90x" in choice.why
    plain = cpu_choice(AVX2, {})
    assert (plain.precision, plain.channels_last, plain.compile) == ("fp32", False, None)
    assert "no bf16 instructions" in plain.why
    assert [c.processor_class for c in (AVX2, AVX512_BF16, AMX, CpuCaps())] == ["avx2", "avx512_bf16", "amx_bf16",
                                                                                 "other"]  # fmt: skip


def test_cpuinfo_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Fake CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu\n")  # fmt: skip
    flags, model = cpu_caps._cpuinfo(info)
    assert model == "Fake CPU" and flags == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_caps._cpuinfo(tmp_path / "missing")[0] == set()


def test_this_processor_is_probed():
    caps = cpu_caps.probe()
    assert caps.torch_capability == torch.backends.cpu.get_cpu_capability() and caps.threads >= 1
    with open("/proc/cpuinfo") as f:
        assert caps.bf16 == ("avx512_bf16" in f.read() or "amx_bf16" in caps.flags)
