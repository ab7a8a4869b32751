"""The validation figures a choice between recipes compares, from committed result rows (no retraining).

Each argument is ``NAME=RESULT_JSON`` (a row that holds its run's per-epoch history). The table gives each run's
length, peak and plateau figure (:func:`fer_bench.experiment.row.plateau_figure`) and says which figure the choice
uses (:func:`fer_bench.experiment.row.recipe_choice`: the plateau when the runs differ in length).

    python scripts/recipe_choice.py v3=results/.../result.json v4=results/.../result.json > choice.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fer_bench.experiment.row import SELECT_BY, plateau_figure, recipe_choice


def table(rows: dict[str, dict]) -> str:
    """Markdown: one line per run, then the rule's verdict."""
    histories = {n: r["history"] for n, r in rows.items()}
    choice = recipe_choice(histories, {n: r.get("converged") for n, r in rows.items()})
    lines = [
        "| run | epochs | converged | peak val macro-F1 (epoch) | plateau window | plateau val macro-F1 (mean over "
        "the window) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, h in histories.items():
        best = max(h, key=lambda e: e[SELECT_BY])
        p = plateau_figure(h)
        value = "–" if p["plateau_val_macro_f1"] is None else f"{p['plateau_val_macro_f1']:.2f}"
        conv = {True: "yes", False: "no"}.get(rows[name].get("converged"), "–")
        lines.append(f"| {name} | {len(h)} | {conv} | {best[SELECT_BY]:.2f} ({best['epoch']}) "
                     f"| last {p['plateau_window']} | {value} |")  # fmt: skip
    lengths = "different lengths" if choice["figure"].startswith("plateau") else "one length"
    lines.append(
        f"\nCompared on `{choice['figure']}` (runs of {lengths}); only converged runs are eligible: the "
        f"highest of {', '.join(choice['eligible'])} is **{choice['chosen']}**."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="+", metavar="NAME=RESULT_JSON")
    args = ap.parse_args(argv)
    rows = {}
    for arg in args.rows:
        name, _, path = arg.partition("=")
        rows[name] = json.loads(Path(path).read_text())
    print(table(rows), end="")


if __name__ == "__main__":
    main()
