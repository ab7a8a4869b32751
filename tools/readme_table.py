"""The READMEs' comparison table from a leaderboard CSV: one test split, one line per backbone and recipe, at most 8.

    python tools/readme_table.py results/fer2013-compare/leaderboard.csv --split private > table.md

``fer-bench leaderboard --format csv`` holds every column; the READMEs want a few, and the issue's form of them:
the mean over seeds ± their sample sd (the leaderboard's ± is a face-bootstrap half-width), the face-bootstrap and
seeds' t intervals of macro-F1, the difference to the best line with both of its intervals and the plan's mark
(``<``: below the best by both tests; ``≈``: not distinguishable), cost, training minutes and epochs, and the
plateau verdict. Published rows (no rank number) are left out: they are never ranked with the lines.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

COLUMNS = ("#", "backbone · recipe", "seeds", "macro-F1 % (mean ± sd)", "95 % CI faces · seeds",
           "top-1 % (mean ± sd)", "macro-F1 − best (CI faces · seeds)", "params", "GMACs", "training min · epochs",
           "converged", "CPU img/s")  # fmt: skip
HEADER = "| " + " | ".join(COLUMNS) + " |"


def _f(row: dict[str, str], key: str, nd: int = 1) -> str:
    value = row.get(key, "")
    return f"{float(value):.{nd}f}" if value not in ("", None) else "–"


def _interval(row: dict[str, str], lo: str, hi: str) -> str:
    return f"{_f(row, lo)} … {_f(row, hi)}".replace("-", "−")


def _signed(row: dict[str, str], key: str) -> str:
    value = row.get(key, "")
    return f"{float(value):+.1f}".replace("-", "−") if value not in ("", None) else "–"


def line(row: dict[str, str]) -> str:
    """One table line of a ranked leaderboard row."""
    if row["sig"] == "best":
        diff = "best"
    else:
        faces = f"{_signed(row, 'vs_best_lo')} … {_signed(row, 'vs_best_hi')}"
        seeds = f"{_signed(row, 'vs_best_seeds_lo')} … {_signed(row, 'vs_best_seeds_hi')}"
        diff = f"{_signed(row, 'vs_best_diff')} ({faces} · {seeds}) {row['sig']}"
    converged = "yes" if row["convergence"].strip().lower() == "converged" else "no"
    cells = [
        row["rank"],
        f"{row['model']} · {row['recipe']}",
        row["seeds"],
        f"{_f(row, 'macro_f1')} ± {_f(row, 'macro_f1_std')}",
        f"{_interval(row, 'macro_f1_ci_lo', 'macro_f1_ci_hi')} · "
        f"{_interval(row, 'macro_f1_seeds_ci_lo', 'macro_f1_seeds_ci_hi')}",
        f"{_f(row, 'top1')} ± {_f(row, 'top1_std')}",
        diff,
        f"{_f(row, 'params_m')} M",
        _f(row, "gmacs", 3),
        f"{_f(row, 'train_min')} ± {_f(row, 'train_min_std')} · {row['epochs']}",
        converged,
        _f(row, "bench_infer_img_s", 0),
    ]
    return "| " + " | ".join(cells) + " |"


def table(rows: list[dict[str, str]], split: str, limit: int = 8) -> str:
    ranked = sorted((r for r in rows if r["split"] == split and r["rank"].isdigit()), key=lambda r: int(r["rank"]))
    if not ranked:
        raise SystemExit(f"readme_table: no ranked {split} rows in the CSV")
    if len(ranked) > limit:
        raise SystemExit(f"readme_table: {len(ranked)} ranked {split} lines; the READMEs' table holds at most {limit}")
    separator = "|" + "---|" * len(COLUMNS)
    return "\n".join([HEADER, separator, *(line(r) for r in ranked)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", type=Path, help="a leaderboard CSV (fer-bench leaderboard --format csv)")
    p.add_argument("--split", default="private", help="the test split of the table (default: private)")
    args = p.parse_args(argv)
    with args.csv.open(newline="") as f:
        sys.stdout.write(table(list(csv.DictReader(f)), args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
