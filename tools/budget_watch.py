"""Apply a budgeted suite's time rule to each line's first cell as soon as it has its row, and stop the suite when
that cell is off (so that the line's other seeds never train at epochs the rule would re-derive).

    python tools/budget_watch.py /work/compare-runs results/fer2013-compare/pilots-amended.yaml --cpu-class avx2 \\
        --pid-file /work/compare-runs/cells.pid

Every ``--every`` seconds it reads the rows of the cells of seed ``--seed`` (default 0) under ROWS with
:func:`budget_check.check`; a new row within the tolerance, or of a line the rule already re-derived once, is
logged; a new row outside it is logged and the process in ``--pid-file`` gets SIGTERM (the suite stops, possibly
mid-epoch, and resumes from the last epoch's ``last.pt``). One line per row on stdout; ``--once``: one pass.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import budget_check  # noqa: E402


def poll(rows_dir: Path, pilots: Path, cpu_class: str, seed: int, seen: set[str], pid_file: Path | None,
         tolerance: float = 0.10) -> list[str]:  # fmt: skip
    """One pass: a line for each row not seen before; SIGTERM to the pid in ``pid_file`` when one is off."""
    said = []
    records, _ = budget_check.check(rows_dir, pilots, cpu_class, tolerance)
    for r in records:
        if r["cell"] in seen or not r["cell"].endswith(f"-s{seed}"):
            continue
        seen.add(r["cell"])
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.3f}"
        mean = "–" if r["mean_epoch_s"] is None else f"{r['mean_epoch_s']:.1f}"
        verdict = budget_check.within(r)
        line = (f"{time.strftime('%H:%M:%S')} {r['cell']}: mean epoch {mean} s, t {r['pilot_s']} s, "
                f"ratio {ratio}: {verdict}")  # fmt: skip
        if verdict == "NO" and pid_file is not None and pid_file.is_file():
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
                line += "; suite stopped"
            except (ProcessLookupError, ValueError):
                line += "; no live suite to stop"
        said.append(line)
    return said


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rows_dir", type=Path)
    p.add_argument("pilots_file", type=Path)
    p.add_argument("--cpu-class", required=True)
    p.add_argument("--pid-file", type=Path, help="the suite's pid file: SIGTERM when a first cell is off")
    p.add_argument("--seed", type=int, default=0, help="the seed whose cells are checked as they finish (default 0)")
    p.add_argument("--tolerance", type=float, default=0.10)
    p.add_argument("--every", type=float, default=30.0, help="seconds between passes (default 30)")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    args = p.parse_args(argv)
    if not args.pilots_file.is_file() or not args.rows_dir.is_dir():
        missing = args.pilots_file if not args.pilots_file.is_file() else args.rows_dir
        print(f"budget_watch: {missing} does not exist", file=sys.stderr)
        return 2
    seen: set[str] = set()
    while True:
        for line in poll(args.rows_dir, args.pilots_file, args.cpu_class, args.seed, seen, args.pid_file,
                         args.tolerance):  # fmt: skip
            print(line, flush=True)
        if args.once:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
