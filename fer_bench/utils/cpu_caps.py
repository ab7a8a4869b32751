"""What the processor supports, and the rule that turns it (and a committed CPU grid) into training settings.

``precision: auto`` and ``channels_last: null`` on CPU resolve through :func:`cpu_choice`, a pure function of the
processor's capability facts (:class:`CpuCaps`) and of what `fer-bench bench --grid` measured on that processor class
(:data:`MEASURED`), so a test can hand it a fake processor. The rule:

1. Precision: bf16 autocast (``amp_bf16``) only where the processor has bf16 instructions (``avx512_bf16`` or
   ``amx_bf16``) AND its class has a committed entry whose grid measured bf16 >= 1.05x fp32 and whose accuracy check
   (fast-48 resnet18, 3 seeds each way, paired hold-out macro-F1 difference with a lower bound above -1 pt) passed;
   fp32 otherwise. Speed is measured, accuracy is shown: neither instructions nor a grid alone change the numbers.
   NOTE: without bf16 instructions oneDNN emulates bf16 (a resnet18 training step at 48 px ran 10-35x slower).
2. Memory format: channels_last where the class's committed grid shows the training step >= 1.05x faster with it at
   the chosen precision (median over the grid's families); NCHW otherwise, and where nothing was measured.
3. Compile: the rule proposes a mode only where the committed grid measured >= 1.05x; otherwise none. A recipe's
   own ``train.compile`` is what training uses (recipes have no ``auto`` for it).

Reads /proc/cpuinfo (Linux); elsewhere the flags are empty and the rule keeps fp32 NCHW.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8")
PAYS = 1.05  # the speed-up a setting must show in the grid (median of interleaved pairs) to be adopted


@dataclass(frozen=True)
class CpuCaps:
    """The capability facts of a processor: its /proc/cpuinfo flags, torch's capability string, threads."""

    flags: frozenset[str] = frozenset()
    torch_capability: str = "DEFAULT"  # torch.backends.cpu.get_cpu_capability(): "AVX2", "AVX512", ...
    threads: int = 1
    model_name: str = ""

    @property
    def bf16(self) -> bool:
        """Native bf16 instructions (dot products in AVX-512 or AMX tiles)."""
        return any(f in self.flags for f in BF16_FLAGS)

    @property
    def amx(self) -> bool:
        return any(f in self.flags for f in AMX_FLAGS)

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def processor_class(self) -> str:
        """The key of :data:`MEASURED`: ``amx_bf16``, ``avx512_bf16``, ``avx512``, ``avx2`` or ``other``."""
        for name, has in (("amx_bf16", "amx_bf16" in self.flags), ("avx512_bf16", self.bf16),
                          ("avx512", self.avx512), ("avx2", "avx2" in self.flags)):  # fmt: skip
            if has:
                return name
        return "other"

    def as_dict(self) -> dict[str, object]:
        """The facts a result or a grid records, flags reduced to the ones the rule and a reader care about."""
        keep = sorted(f for f in self.flags if f.startswith(("avx", "amx", "fma")))
        return {"cpu_model": self.model_name, "processor_class": self.processor_class, "bf16_instructions": self.bf16,
                "amx": self.amx, "avx512": self.avx512, "threads": self.threads,
                "torch_capability": self.torch_capability, "cpu_flags": " ".join(keep)}  # fmt: skip


@dataclass(frozen=True)
class GridFacts:
    """Training-step speed-ups against fp32 NCHW eager measured by a committed `fer-bench bench --grid` (median over
    its families of each family's median pair ratio; 48 px, fast-48's optimizer, EMA and batch size)."""

    source: str  # the committed grid these figures come from (results/...)
    amp_bf16: float | None = None  # bf16 autocast, NCHW, eager
    bf16_accuracy_ok: bool = False  # the hold-out accuracy check of amp_bf16 passed (its results folder in source)
    channels_last: dict[str, float] = field(default_factory=dict)  # precision → channels_last eager ratio
    compile: dict[str, float] = field(default_factory=dict)  # precision → compiled NCHW ratio


# processor class → what its committed grid measured. A class without an entry gets the rule's defaults.
MEASURED: dict[str, GridFacts] = {}


@dataclass(frozen=True)
class CpuChoice:
    precision: str  # "fp32" or "amp_bf16"
    channels_last: bool
    compile: str | None
    why: str


def cpu_choice(caps: CpuCaps, measured: dict[str, GridFacts] | None = None) -> CpuChoice:
    """The CPU training settings for ``caps`` by the rule in this module's docstring.

    Example:
        >>> cpu_choice(CpuCaps(frozenset({"avx2", "fma"}))).precision
        'fp32'
        >>> cpu_choice(CpuCaps(frozenset({"avx512f", "avx512_bf16"}))).precision  # nothing measured yet
        'fp32'
        >>> bf16 = {"avx512_bf16": GridFacts("results/x", amp_bf16=1.4, bf16_accuracy_ok=True)}
        >>> cpu_choice(CpuCaps(frozenset({"avx512f", "avx512_bf16"})), bf16).precision
        'amp_bf16'
    """
    facts = (MEASURED if measured is None else measured).get(caps.processor_class)
    if not caps.bf16:
        precision, why = "fp32", "no bf16 instructions"
    elif facts is None or facts.amp_bf16 is None:
        precision, why = "fp32", "bf16 instructions, but no committed grid for this processor class"
    elif facts.amp_bf16 < PAYS:
        precision, why = "fp32", f"bf16 instructions, but amp_bf16 measured {facts.amp_bf16:.2f}x ({facts.source})"
    elif not facts.bf16_accuracy_ok:
        precision, why = "fp32", f"amp_bf16 {facts.amp_bf16:.2f}x, hold-out accuracy check not passed ({facts.source})"
    else:
        precision, why = "amp_bf16", f"bf16 instructions, {facts.amp_bf16:.2f}x, accuracy checked ({facts.source})"
    cl = facts.channels_last.get(precision) if facts else None
    comp = facts.compile.get(precision) if facts else None
    channels_last = cl is not None and cl >= PAYS
    why += f"; channels_last {f'{cl:.2f}x' if cl is not None else 'not measured'}"
    why += f"; compile {f'{comp:.2f}x' if comp is not None else 'not measured'}"
    return CpuChoice(precision, channels_last, "default" if comp is not None and comp >= PAYS else None, why)


def probe() -> CpuCaps:
    """This processor's facts (cached per process: they do not change while it runs)."""
    global _PROBED
    if _PROBED is None:
        import torch

        flags, model = _cpuinfo(Path("/proc/cpuinfo"))
        _PROBED = CpuCaps(frozenset(flags), torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), model)
    return _PROBED


_PROBED: CpuCaps | None = None


def _cpuinfo(path: Path) -> tuple[set[str], str]:
    """The flags and model name of the first processor in a /proc/cpuinfo text (empty where there is none)."""
    try:
        text = path.read_text()
    except OSError:
        return set(), os.uname().machine
    flags, model = set(), ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "model name" and not model:
            model = value.strip()
    return flags, model
