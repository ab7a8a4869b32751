"""Cross-dataset rows on the same faces under both label sets, from committed predictions (no model, no retraining).

FER+ relabels FER2013's faces, so a FER2013 model's FER+ test top-1 and its own PrivateTest top-1 are over different
faces and labels. Two steps (``fer_bench.evaluation.cross_dataset``: the matching and the figures):

    # once, from the data: which FER2013 PrivateTest sample is which FER+ test sample (label-free face ids)
    python scripts/same_faces.py pairs --fer2013 ../shared/data/fer2013 --ferplus ../shared/data/ferplus \\
        --out results/ferplus-converged/same-faces-pairs.csv
    # the table, and each cross-dataset row's ``same_faces`` block, from the predictions files and the pairs
    python scripts/same_faces.py table --pairs results/ferplus-converged/same-faces-pairs.csv \\
        --line "fast-48 v4=OWN_RUN_DIR:CROSS_RUN_DIR" … --compare "fast-48 v4|fast-48 v1" \\
        --split "fast-48 v4|fast-48 v1" \\
        --out results/ferplus-converged/same-faces
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from statsmodels.stats.multitest import multipletests

from fer_bench.evaluation import cross_dataset, predictions
from fer_bench.utils.io import write_json

COLUMNS = ("fer2013", "ferplus", "ferplus-crossentropy")  # the datasets whose sample ids the pairs file holds
ELSEWHERE = "fer2013_copy_outside_private"  # 1: the face's pixels also occur in FER2013 Training or PublicTest


def make_pairs(fer2013_dir: str, ferplus_dir: str, out: Path) -> None:
    """The PrivateTest faces FER+ keeps, with their sample ids in FER2013 and in both FER+ label modes."""
    from fer_bench.data import load_dataset
    from fer_bench.data.labels import PRIVATE
    from fer_bench.experiment.protocol import sample_ids

    sets = {n: load_dataset(n, fer2013_dir if n == "fer2013" else ferplus_dir)
            for n in ("fer2013", "ferplus", "ferplus:labels=crossentropy")}  # fmt: skip
    split = {n: (d.images[d.splits == PRIVATE], sample_ids(d)[d.splits == PRIVATE]) for n, d in sets.items()}
    a = cross_dataset.same_face_pairs(*split["fer2013"], *split["ferplus"])
    b = cross_dataset.same_face_pairs(*split["ferplus"], *split["ferplus:labels=crossentropy"])
    assert np.array_equal(a[:, 1], b[:, 0]), "the two FER+ label modes hold the same faces in the same order"
    f = sets["fer2013"]
    outside = {x.tobytes() for x in np.ascontiguousarray(f.images[f.splits != PRIVATE])}
    row = dict(zip(split["fer2013"][1], np.ascontiguousarray(split["fer2013"][0]), strict=True))
    elsewhere = [int(row[i].tobytes() in outside) for i in a[:, 0]]
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow((*COLUMNS, ELSEWHERE))
        w.writerows(zip(a[:, 0], a[:, 1], b[:, 1], elsewhere, strict=True))


def read_pairs(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = {c: np.array([r[c] for r in rows], dtype="<U16") for c in COLUMNS}
    if rows and ELSEWHERE in rows[0]:
        out[ELSEWHERE] = np.array([r[ELSEWHERE] == "1" for r in rows])
    return out


def _load(run_dir: Path) -> tuple[dict, dict]:
    row = json.loads((run_dir / "result.json").read_text())
    return row, predictions.read(run_dir / row["predictions"]["file"])


def line(own_dir: Path, cross_dir: Path, pairs: dict[str, np.ndarray]) -> dict:
    """One model's same-faces figures: its own-dataset row and its cross-dataset row."""
    own_row, own = _load(own_dir)
    cross_row, cross = _load(cross_dir)
    block = cross_row["cross_dataset"]
    m = cross_dataset.ClassMap(tuple(block["model_classes"]), tuple(block["data_classes"]))
    own_ids, cross_ids = pairs[own_row["dataset"].replace(":labels=", "-")], pairs[cross_row["dataset"]]
    right = cross_dataset.correct_on_pairs(own, tuple(own_row["classes"]), cross, m,
                                           np.stack([own_ids, cross_ids], 1))  # fmt: skip
    figures = cross_dataset.same_faces(*right) | {"own_dataset": own_row["dataset"],
                                                  "other_dataset": cross_row["dataset"]}  # fmt: skip
    return {"own": str(own_dir), "cross": str(cross_dir), "figures": figures, "right": right}


def _holm(tests: list[dict]) -> None:
    """Holm-adjusted p (statsmodels) over one table's family of tests, written beside each raw p."""
    if tests:
        for d, q in zip(tests, multipletests([d["p"] for d in tests], method="holm")[1], strict=True):
            d["p_holm"] = float(q)


def _cells(p: dict) -> list[str]:
    return [f"{d['diff_pt']:+.2f} ({d['a_only']} / {d['b_only']}), p = {d['p']:.2g} (Holm {d['p_holm']:.2g})"
            for d in (p["own_labels"], p["other_labels"])]  # fmt: skip


def table(
    lines: dict[str, dict],
    compare: list[tuple[str, str]],
    split: list[tuple[str, str]] = (),
    elsewhere: np.ndarray | None = None,
) -> tuple[str, dict]:
    """Markdown and JSON: each line's two top-1 figures on the same faces, then each asked-for paired difference.

    ``split``: pairs also compared separately on the faces with a copy outside PrivateTest (``elsewhere``, one bool
    per paired face) and on the rest; its tests are a second, exploratory family.
    """
    first = next(iter(lines.values()))["figures"]
    own, other = first["own_dataset"], first["other_dataset"]
    md = [f"Same {first['n_faces']:,} faces (FER2013 PrivateTest faces that FER+ test keeps), matched by content id.",
          "", f"| model | top-1 % with {own} labels | top-1 % with {other} labels |", "|---|---|---|"]  # fmt: skip
    md += [f"| {n} | {x['figures']['top1_own_labels']:.2f} | {x['figures']['top1_other_labels']:.2f} |"
           for n, x in lines.items()]  # fmt: skip
    head = (f"| A − B | with {own} labels: pt (only A / only B right), p | with {other} labels: pt "
            "(only A / only B right), p |")  # fmt: skip
    pairs = {f"{a} − {b}": cross_dataset.paired_same_faces(lines[a]["right"], lines[b]["right"]) for a, b in compare}
    _holm([d for p in pairs.values() for d in (p["own_labels"], p["other_labels"])])
    if pairs:
        md += ["", head, "|---|---|---|"]
        md += [f"| {name} | {' | '.join(_cells(p))} |" for name, p in pairs.items()]
        md += [
            "",
            "p: exact McNemar, a two-sided binomial test on the faces only one of the two models gets right "
            "(scipy.stats.binomtest); Holm: adjusted over this table's "
            f"{2 * len(pairs)} tests (statsmodels `multipletests`). The comparisons were chosen after seeing the "
            "results and one seed per model, so a difference is between two runs, not two recipes: exploratory.",
        ]
    by_copy = {}
    if split and elsewhere is not None:
        for a, b in split:
            for where, mask in (("copy outside PrivateTest", elsewhere), ("no copy outside PrivateTest", ~elsewhere)):
                ra, rb = (tuple(r[mask] for r in lines[n]["right"]) for n in (a, b))
                by_copy[f"{a} − {b}, {where}"] = cross_dataset.paired_same_faces(ra, rb) | {"n_faces": int(mask.sum())}
        _holm([d for p in by_copy.values() for d in (p["own_labels"], p["other_labels"])])
        md += ["", f"Split by whether the face's pixels also occur in FER2013 Training or PublicTest "
               f"({int(elsewhere.sum()):,} of {len(elsewhere):,} faces; `{ELSEWHERE}` in the pairs file):", "",
               head.replace("| A − B |", "| A − B, faces |"), "|---|---|---|"]  # fmt: skip
        md += [f"| {name} ({p['n_faces']:,}) | {' | '.join(_cells(p))} |" for name, p in by_copy.items()]
        md += [
            "",
            f"Holm over these {2 * len(by_copy)} tests, a second family; the split was asked after seeing "
            "the table above: exploratory.",
        ]
    out = {"lines": {n: {k: v for k, v in x.items() if k != "right"} for n, x in lines.items()}, "paired": pairs}
    if by_copy:
        out["paired_by_copy_outside_private"] = by_copy
    return "\n".join(md) + "\n", out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pairs")
    p.add_argument("--fer2013", required=True), p.add_argument("--ferplus", required=True)
    p.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("table")
    t.add_argument("--pairs", type=Path, required=True)
    t.add_argument("--line", action="append", required=True, metavar="NAME=OWN_RUN_DIR:CROSS_RUN_DIR")
    t.add_argument("--compare", action="append", default=[], metavar="A|B")
    t.add_argument(
        "--split",
        action="append",
        default=[],
        metavar="A|B",
        help="also compare A and B on the faces with and without a copy outside PrivateTest",
    )
    t.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json; rows get a same_faces block")
    args = ap.parse_args(argv)
    if args.cmd == "pairs":
        return make_pairs(args.fer2013, args.ferplus, args.out)
    pairs = read_pairs(args.pairs)
    lines = {}
    for spec in args.line:
        name, _, dirs = spec.partition("=")
        own_dir, cross_dir = (Path(d) for d in dirs.split(":"))
        lines[name] = line(own_dir, cross_dir, pairs)
    md, out = table(
        lines,
        [tuple(c.split("|")) for c in args.compare],
        [tuple(c.split("|")) for c in args.split],
        pairs.get(ELSEWHERE),
    )
    args.out.with_suffix(".md").write_text(md)
    write_json(args.out.with_suffix(".json"), out)
    for x in lines.values():  # the cross-dataset row carries its own same-faces figures
        path = Path(x["cross"]) / "result.json"
        write_json(path, json.loads(path.read_text()) | {"same_faces": x["figures"] | {"own_row": x["own"]}})


if __name__ == "__main__":
    main()
