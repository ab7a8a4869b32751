"""Paired, interleaved measurement: the two sides of a ratio are measured in turn, A B A B …, so that drift in
the machine's speed (another process, clock and cache changes) hits both alike. Every side reports its median
and IQR, and the ratio is taken pair by pair (A_i / B_i); its median is the headline.

Used by the data-path benchmark (`fer-bench bench --data`) and by the cross-check of `fer-bench bench` against
``torch.utils.benchmark.Timer`` (tools/check_bench_vs_timer.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MIN_PAIRS = 5  # fewer pairs give no meaningful IQR


def summary(values: list[float], digits: int = 6) -> dict[str, Any]:
    """Median, quartiles, IQR, min and max of ``values`` (kept too, so that anyone can recompute them), to
    ``digits`` significant digits."""
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    r = lambda v: float(f"{float(v):.{digits}g}")  # noqa: E731
    return {"median": r(med), "iqr": r(q3 - q1), "q1": r(q1), "q3": r(q3), "min": r(min(values)),
            "max": r(max(values)), "n": len(values), "values": [r(v) for v in values]}  # fmt: skip


def paired(
    a: Callable[[], Any],
    b: Callable[[], Any],
    *,
    pairs: int = 7,
    warmup: int = 1,
    names: tuple[str, str] = ("a", "b"),
    progress: Callable[[str], None] | None = None,
    fields: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Measure ``a`` and ``b`` alternately (``warmup`` untimed pairs first, then ``pairs`` kept ones).

    Each call returns one measurement (a rate or a time). The result holds each side's summary and the
    summary of the pair-by-pair ratio ``a_i / b_i``; ``order`` lists the calls as they ran.

    With ``fields``, each call returns a mapping with one measurement per field (e.g. a fresh process that times
    inference and then training), and the result maps each field to what a one-measurement call would give:
    the same calls, order and spans, that field's values and ratios.
    """
    if pairs < MIN_PAIRS:
        raise ValueError(f"paired(): {pairs} pairs; at least {MIN_PAIRS} are needed for a median and an IQR")
    keys = fields or ("",)
    pick = (lambda out: {"": float(out)}) if fields is None else (lambda out: {k: float(out[k]) for k in keys})
    for _ in range(warmup):
        a()
        b()
    av, bv, order, spans = [], [], [], []
    t0 = time.perf_counter()
    for i in range(pairs):
        for fn, out, name in ((a, av, names[0]), (b, bv, names[1])):
            start = time.perf_counter() - t0
            out.append(pick(fn()))
            order.append(name)
            spans.append((round(start, 4), round(time.perf_counter() - t0, 4)))
        if progress:
            said = "; ".join(f"{k + ': ' if k else ''}{names[0]} {av[-1][k]:.4g}, {names[1]} {bv[-1][k]:.4g}"
                             for k in keys)  # fmt: skip
            progress(f"pair {i + 1}/{pairs}: {said}")

    def result(key: str) -> dict[str, Any]:
        x, y = [v[key] for v in av], [v[key] for v in bv]
        return {
            "pairs": pairs, "warmup_pairs": warmup, "order": list(order), "spans_s": list(spans),
            names[0]: summary(x), names[1]: summary(y),
            "ratio": summary([p / q for p, q in zip(x, y, strict=True)]),
            "ratio_of": f"{names[0]} / {names[1]}, pair by pair",
        }  # fmt: skip

    return result("") if fields is None else {k: result(k) for k in keys}


def check_paired(result: dict[str, Any], names: tuple[str, str]) -> None:
    """Raise if ``result`` (from :func:`paired`) is not internally consistent: calls alternating in name and in time
    (each one starts after the one before it ended), as many values on each side as pairs, and every ratio the
    quotient of its pair."""
    a, b = result[names[0]]["values"], result[names[1]]["values"]
    n = result["pairs"]
    if not (len(a) == len(b) == n >= MIN_PAIRS):
        raise AssertionError(f"{len(a)} and {len(b)} values for {n} pairs")
    if result["order"] != [names[0], names[1]] * n:
        raise AssertionError(f"not interleaved: {result['order']}")
    spans = result["spans_s"]  # (start, end) of every call, in the order they ran: they must follow one another
    if (
        len(spans) != 2 * n
        or any(s0 > e0 for s0, e0 in spans)
        or any(spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1))
    ):
        raise AssertionError(f"the measurements do not alternate in time: {spans}")
    ratios = result["ratio"]["values"]
    want = [x / y for x, y in zip(a, b, strict=True)]
    if not np.allclose(ratios, want, rtol=1e-3):
        raise AssertionError(f"ratios {ratios} are not the pair-by-pair quotients {want}")
    if abs(result["ratio"]["median"] - float(np.median(ratios))) > 1e-3 * abs(result["ratio"]["median"]):
        raise AssertionError("the headline ratio is not the median of the pair-by-pair ratios")


class MachineLoad:
    """What else ran while we measured: the load average at both ends and the CPU seconds that other processes
    (not this one or its children, e.g. DataLoader workers) used in between, read from /proc (Linux)."""

    def __enter__(self) -> MachineLoad:
        self.start, self.t0, self.load0, self.steal0 = _cpu_by_pid(), time.monotonic(), _loadavg(), _steal_s()
        return self

    def __exit__(self, *exc) -> None:
        stats, wall = _proc_stats(), time.monotonic() - self.t0  # one scan of /proc for both uses
        end = {pid: (name, cpu) for pid, (name, _, _, cpu) in stats.items()}
        mine = {os.getpid()} | _descendants(os.getpid(), {pid: st[2] for pid, st in stats.items()})
        others = {pid: (end[pid][1] - self.start.get(pid, (None, 0.0))[1], end[pid][0]) for pid in end
                  if pid not in mine}  # fmt: skip
        busy = sorted(((cpu, name) for cpu, name in others.values() if cpu > 0.05 * wall), reverse=True)
        self.conditions = {
            "loadavg_1min_start": self.load0, "loadavg_1min_end": _loadavg(), "wall_s": round(wall, 1),
            "cpu_count": os.cpu_count(),
            "other_processes_cpu_s": round(sum(c for c, _ in others.values()), 1),
            "other_processes_over_5pct": [f"{name}: {cpu:.1f} s" for cpu, name in busy[:5]],
            # CPU time the hypervisor gave to other guests while ours wanted it (all vCPUs together)
            "cpu_steal_s": round(_steal_s() - self.steal0, 2),
        }  # fmt: skip


def _steal_s() -> float:
    """Seconds of CPU steal so far, all CPUs together (/proc/stat; 0 where unavailable)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _cpu_by_pid() -> dict[int, tuple[str, float]]:
    """pid → (command name, user + system CPU seconds so far), for every process we can read."""
    return {pid: (name, cpu) for pid, (name, _, _, cpu) in _proc_stats().items()}


def _descendants(pid: int, parent: dict[int, int]) -> set[int]:
    """Every descendant of ``pid``, given each process's parent."""
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


def _proc_stats() -> dict[int, tuple[str, str, int, float]]:
    """pid → (command name, state, parent pid, user + system CPU seconds), read from /proc/PID/stat."""
    out = {}
    for d in Path("/proc").glob("[0-9]*"):
        if (stat := _read_stat(int(d.name))) is not None:
            out[int(d.name)] = stat
    return out


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds that ``pid`` has used so far (0 when it is gone)."""
    stat = _read_stat(pid)
    return stat[3] if stat else 0.0


def proc_runnable(pid: int) -> bool:
    """Whether ``pid`` is running or waiting for a core (state R in /proc/PID/stat)."""
    stat = _read_stat(pid)
    return stat is not None and stat[1] == "R"


def _read_stat(pid: int) -> tuple[str, str, int, float] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
    return name, rest[0], int(rest[1]), (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
