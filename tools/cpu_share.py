"""Sample the CPU share of a trainer: its process tree's CPU seconds against the machine's busy CPU seconds.

    python tools/cpu_share.py --pid 12345 --out results/X/cpu-share.txt      # every 60 s until the pid exits
    python tools/cpu_share.py --sum results/X/cpu-share*.txt                  # the files' totals: CPU hours, share

Output (text, one sample a line, appended and flushed each interval)::

    # utc trainer_cpu_s machine_busy_cpu_s share_pct (since start; pid 12345; every 60 s)
    2026-11-30T00:59:13Z 112.3 117.0 95.9

- ``trainer_cpu_s``: CPU seconds (user + system) the trainer's process tree used since the sampler started: every
  live process under ``--pid``, each with the time of its finished, waited-for children (``/proc/PID/stat`` fields
  utime, stime, cutime, cstime), so worker processes count while they run and after they exit.
- ``machine_busy_cpu_s``: CPU seconds all cores spent busy since the start (``/proc/stat``'s first line: user, nice,
  system, irq, softirq, steal; idle and iowait are not busy; guest time is inside user).
- ``share_pct``: 100 × trainer / busy, cumulative: what the rest of the machine took is 100 − share.

``--sum`` adds up sample files; each sampler run counts from its own start, and a file appended to by a later run
holds several, each under its header. Per run: its first and last sample time, the trainer's and the machine's CPU
seconds at its last sample and the share; then the total trainer CPU hours, the busy machine CPU hours and the
share over all runs. CPU used after a run's last sample (up to one interval), or while no sampler ran, is not
counted. Runs whose sampling times overlap (two samplers on one trainer) are refused: they would count twice.

Seconds carry one decimal (the files before this script had whole seconds; the columns are the same).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system [idle iowait] irq softirq steal (proc(5))


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 (state) onwards


def process_tree(root: int) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):  # gone between listing and reading
                continue
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def tree_cpu_s(root: int) -> float:
    """CPU seconds of ``root``'s process tree: utime + stime + cutime + cstime of each live process."""
    total = 0
    for pid in process_tree(root):
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        total += sum(int(v) for v in f[11:15])  # fields 14-17 of proc(5), counted from field 3
    return total / TICK


def machine_busy_s() -> float:
    """Busy CPU seconds of all cores since boot (``/proc/stat``)."""
    values = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(values[i]) for i in BUSY_FIELDS) / TICK


def alive(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def sample_lines(pid: int, interval: float, count: int | None = None):
    """Yield the header, then one line per ``interval`` seconds while ``pid`` lives (at most ``count`` lines)."""
    t0, b0 = tree_cpu_s(pid), machine_busy_s()
    yield f"# utc trainer_cpu_s machine_busy_cpu_s share_pct (since start; pid {pid}; every {interval:g} s)"
    n = 0
    while count is None or n < count:
        time.sleep(interval)
        if not alive(pid):
            return
        trainer, busy = tree_cpu_s(pid) - t0, machine_busy_s() - b0
        share = 100.0 * trainer / busy if busy > 0 else 0.0
        yield f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {trainer:.1f} {busy:.1f} {share:.1f}"
        n += 1


def _runs(path: Path) -> list[list[list[str]]]:
    """A sample file's samples, one list per sampler run (a file appended to again starts over at its header)."""
    runs: list[list[list[str]]] = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            runs.append([])
        elif line.strip():
            if not runs:
                runs.append([])
            runs[-1].append(line.split())
    return [r for r in runs if r]


def summarise(paths: list[Path]) -> str:
    """The ``--sum`` report of sample files: one line per sampler run, then the totals. ValueError names a file
    that is not a sample file, or two runs whose sampling times overlap."""
    runs = []
    for path in paths:
        for samples in _runs(path):
            last = samples[-1]
            try:
                runs.append((samples[0][0], last[0], float(last[1]), float(last[2]), path.name))
            except (IndexError, ValueError):
                raise ValueError(f"{path}: not a sample file (a line reads {' '.join(last)!r})") from None
    runs.sort()
    for a, b in itertools.pairwise(runs):
        if b[0] <= a[1]:
            raise ValueError(f"{a[4]} ({a[0]}–{a[1]}) and {b[4]} ({b[0]}–{b[1]}) overlap: two samplers on one "
                             "trainer would count its CPU twice; give one of them.")  # fmt: skip
    lines, trainer, busy = ["# file first_utc last_utc trainer_cpu_s machine_busy_cpu_s share_pct"], 0.0, 0.0
    for first, last, t, b, name in runs:
        trainer, busy = trainer + t, busy + b
        lines.append(f"{name} {first} {last} {t:.1f} {b:.1f} {f'{100 * t / b:.1f}' if b else '-'}")
    share = 100 * trainer / busy if busy else 0.0
    lines.append(f"total: trainer {trainer / 3600:.2f} CPU h of {busy / 3600:.2f} busy CPU h ({share:.1f} %), "
                 f"{len(paths)} file(s)")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--pid", type=int, help="the trainer's process id (its children count too)")
    mode.add_argument("--sum", type=Path, nargs="+", metavar="FILE", help="add up sample files instead (see above)")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between samples (default 60)")
    p.add_argument("--out", type=Path, help="file to append to (default: stdout)")
    p.add_argument("--count", type=int, help="stop after this many samples (default: when the pid exits)")
    args = p.parse_args(argv)
    if args.sum:
        missing = [str(f) for f in args.sum if not f.is_file()]
        if missing:
            print(f"cpu_share: no sample file {', '.join(missing)}; give the files --out wrote.")
            return 2
        try:
            print(summarise(args.sum))
        except ValueError as exc:
            print(f"cpu_share: {exc}")
            return 2
        return 0
    if not alive(args.pid):
        print(f"cpu_share: no live process {args.pid}; give the trainer's pid (pgrep -f 'fer_bench run').")
        return 2
    out = args.out.open("a") if args.out else sys.stdout
    for line in sample_lines(args.pid, args.interval, args.count):
        print(line, file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
