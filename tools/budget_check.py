"""Check that every cell of a budgeted suite trained in the time its pilots promised (the plan's 10 % rule).

    python tools/budget_check.py results/fer2013-compare/runs results/fer2013-compare/pilots.yaml --cpu-class avx2

A budgeted suite gives each line E = round(budget_s / t) epochs, t the line's median pilot epoch (training and
validation). The budget means what it says only if the cells' epochs took about t: for each cell (a row,
``validation.json`` or ``result.json``, one per cell), the mean wall time of its epochs that ran on the pilots'
processor class (each history entry's ``cpu_class``) is compared with t. A cell off by more than ``--tolerance``
(default 10 %) fails; so does a cell with no epoch on that class. Epochs on other classes are counted and reported,
never compared with these pilots: a session on another processor class checks them against its own pilots file
(``--cpu-class`` of that class). A line the rule re-derived once (its pilots entry names the cell it came from,
``rederived_from``) is not re-derived again: its cells are checked against the new t and one that is off is kept and
marked so (the plan's amendment of 2026-12-07). Exit code 1 when any other cell fails, 0 otherwise.

With ``--rederive CELL --write FILE`` it applies the rule instead: FILE is the pilots file with CELL's line given
t = that cell's mean epoch (exit 2 when the cell has no row or its line was re-derived already).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import yaml

from fer_bench.utils.io import row_files

ROW_FILES = ("validation.json", "result.json")


def line_of(cell: str) -> str:
    """A cell id without its seed: ``resnet18-compare-48-s2`` -> ``resnet18-compare-48``."""
    head, sep, seed = cell.rpartition("-s")
    return head if sep and seed.isdigit() else cell


def read_cells(rows_dir: Path) -> dict[str, dict]:
    """Each cell's row under ``rows_dir`` (a cell's split rows repeat its training: the first one found), none below a
    ``superseded/`` folder (cells a rule of the plan set aside)."""
    cells: dict[str, dict] = {}
    for path in sorted(p for name in ROW_FILES for p in row_files(Path(rows_dir), name)):
        row = json.loads(path.read_text())
        if row.get("cell") and row.get("history"):
            cells.setdefault(row["cell"], row | {"_path": str(path)})
    return cells


def check(rows_dir: Path, pilots_file: Path, cpu_class: str, tolerance: float = 0.10) -> tuple[list[dict], bool]:
    """One record per cell (line, epochs on the class and elsewhere, mean epoch s, the pilot's t, the ratio, ok)."""
    lines = (yaml.safe_load(Path(pilots_file).read_text()) or {}).get("lines", {})
    records, ok = [], True
    for cell, row in sorted(read_cells(rows_dir).items()):
        line = line_of(cell)
        walls = [h["epoch_wall_s"] for h in row["history"] if h.get("cpu_class") == cpu_class]
        other = sum(1 for h in row["history"] if h.get("cpu_class") != cpu_class)
        entry = lines.get(line) or {}
        t = entry.get("median_epoch_s")
        mean = statistics.fmean(walls) if walls else None
        ratio = mean / t if mean is not None and t else None
        good = ratio is not None and abs(ratio - 1) <= tolerance
        kept = not good and ratio is not None and bool(entry.get("rederived_from"))
        ok &= good or kept
        train_s = round(sum(h["epoch_wall_s"] for h in row["history"]), 1)
        records.append({"cell": cell, "line": line, "epochs": len(row["history"]), "on_class": len(walls),
                        "elsewhere": other, "mean_epoch_s": mean, "pilot_s": t, "ratio": ratio, "ok": good,
                        "kept": kept, "segments": row.get("segments"), "train_s": train_s})  # fmt: skip
    return records, ok and bool(records)


def rederive(rows_dir: Path, pilots_file: Path, cell: str, cpu_class: str, out: Path, budget_s: float = 2700) -> str:
    """Write ``out``: the pilots file with ``cell``'s line given t = that cell's mean epoch on ``cpu_class`` (the
    cell it came from named under ``rederived_from``); every other line as it was. Returns one line saying so.

    Raises:
        ValueError: no row of ``cell``, no such line, no epoch on the class, or a line re-derived once already (the
            plan re-derives a line at most once).
    """
    data = yaml.safe_load(Path(pilots_file).read_text())
    row, line = read_cells(rows_dir).get(cell), line_of(cell)
    if row is None or line not in data.get("lines", {}):
        raise ValueError(f"no row of cell {cell!r} under {rows_dir}, or no line {line!r} in {pilots_file}")
    old = data["lines"][line]
    if old.get("rederived_from"):
        raise ValueError(f"line {line!r} was re-derived once already, from {old['rederived_from']['cell']!r}")
    walls = [h["epoch_wall_s"] for h in row["history"] if h.get("cpu_class") == cpu_class]
    if not walls:
        raise ValueError(f"cell {cell!r} has no epoch on {cpu_class}")
    mean = round(statistics.fmean(walls), 2)
    source = {"cell": cell, "run_id": row.get("run_id"), "git_sha": row.get("git_sha"),
              "pilot_median_epoch_s": old["median_epoch_s"], "epochs": len(walls),
              "note": "mean epoch wall time of that cell (training + validation)"}  # fmt: skip
    data["lines"][line] = {"epoch_wall_s": [round(w, 2) for w in walls], "median_epoch_s": mean,
                           "rederived_from": source}  # fmt: skip
    in_place = Path(out).resolve() == Path(pilots_file).resolve()
    if not in_place:
        data.setdefault("amends", Path(pilots_file).name)
    # a file rewritten in place keeps its leading comment (what the file is, which amendment)
    lines = Path(pilots_file).read_text().splitlines(keepends=True) if in_place else []
    head = "".join(itertools.takewhile(lambda text: text.startswith("#"), lines))
    Path(out).write_text(head + yaml.safe_dump(data, sort_keys=False))
    e_old, e_new = max(1, round(budget_s / old["median_epoch_s"])), max(1, round(budget_s / mean))
    # the same epochs from the same seeds: the finished cells stand (PLAN.md, amendments)
    said = f"E stays {e_old}: its finished cells stand" if e_new == e_old else f"E {e_old} -> {e_new}: its cells rerun"
    return f"{line}: t {old['median_epoch_s']} -> {mean} s ({said}), written to {out}"


def _fmt(v: object, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def within(r: dict) -> str:
    return "yes" if r["ok"] else "no, kept (line re-derived once)" if r["kept"] else "NO"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rows_dir", type=Path, help="the folder holding the cells' rows (searched recursively)")
    p.add_argument("pilots_file", type=Path, help="the suite's pilots file (`fer-bench run --suite S --pilot`)")
    p.add_argument("--cpu-class", required=True, help="the processor class the pilots ran on (avx2, avx512, ...)")
    p.add_argument("--tolerance", type=float, default=0.10, help="largest accepted |mean / t - 1| (default 0.10)")
    p.add_argument("--rederive", metavar="CELL", help="write --write: the pilots with CELL's line re-derived from it")
    p.add_argument("--write", type=Path, help="the amended pilots file --rederive writes (may be the pilots file)")
    p.add_argument("--budget-s", type=float, default=2700, help="the suite's budget_s, for the epochs said (2700)")
    args = p.parse_args(argv)
    if args.rederive:
        if args.write is None:
            p.error("--rederive needs --write FILE")
        try:
            print(rederive(args.rows_dir, args.pilots_file, args.rederive, args.cpu_class, args.write, args.budget_s))
        except ValueError as exc:
            print(f"budget_check: {exc}", file=sys.stderr)
            return 2
        return 0
    if not args.pilots_file.is_file() or not args.rows_dir.is_dir():
        print(f"budget_check: {args.pilots_file if not args.pilots_file.is_file() else args.rows_dir} does not "
              "exist", file=sys.stderr)  # fmt: skip
        return 2
    records, ok = check(args.rows_dir, args.pilots_file, args.cpu_class, args.tolerance)
    print("| cell | epochs | on class | elsewhere | segments | train min | mean epoch s | pilot t s | ratio | within |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['cell']} | {r['epochs']} | {r['on_class']} | {r['elsewhere']} | {_fmt(r['segments'], 'd')} | "
              f"{r['train_s'] / 60:.1f} | {_fmt(r['mean_epoch_s'], '.1f')} | {_fmt(r['pilot_s'], '.1f')} | "
              f"{_fmt(r['ratio'], '.3f')} | {within(r)} |")  # fmt: skip
    total = sum(r["train_s"] for r in records)
    print(f"\n{len(records)} cell(s), {total / 3600:.2f} h of training; tolerance ±{args.tolerance:.0%} on "
          f"{args.cpu_class}: {'every cell within it' if ok else 'NOT every cell within it'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
