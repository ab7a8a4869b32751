"""Rows' per-sample predictions → intervals, calibration and a paired comparison (``fer-bench compare``).

A side is a run folder (its ``result.json`` names the predictions file and its sha256, which is checked), a
predictions file, or the runs of one leaderboard line (several seeds: a folder that holds their run folders, or
paths joined by commas). Predictions are paired by sample id (:func:`fer_bench.protocol.sample_ids`), never by
position, so rows whose data came from a CSV and from the folder tree pair up; sides that cover different ids are
an error, as are a file whose digest is not the one its row scored. Two lines of several seeds are paired seed by
seed: McNemar's table pools the pairs, the bootstrap averages the pairs' differences on the same resampled ids.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = predictions.write(d / "a.npz", np.eye(3)[[0, 1, 2, 0]], np.array([0, 1, 2, 1]), np.array(list("wxyz")))
    >>> _ = predictions.write(d / "b.npz", np.eye(3)[[0, 1, 2, 1]], np.array([0, 1, 2, 1]), np.array(list("wxyz")))
    >>> r = compare(load_line(str(d / "a.npz")), load_line(str(d / "b.npz")), n_boot=100)
    >>> r["paired"]["mcnemar"]["b_only"], r["paired"]["mcnemar"]["method"]
    (1, 'exact binomial')
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench import calibration, predictions, stats
from fer_bench.errors import DataError

VALID_FILE = predictions.VALID_FILE  # the validation hold-out's predictions, for temperature scaling


@dataclass(frozen=True)
class Side:
    """One row's test predictions (and, when written, its validation predictions)."""

    name: str
    path: Path
    probs: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    valid: tuple[np.ndarray, np.ndarray] | None = None
    seed: int | None = None
    line: tuple = ()  # (model, protocol hash, split) of a run folder: the runs of one side must share it
    average: tuple[int, ...] | None = None  # the classes macro-F1 averages (a cross-dataset row's shared ones)

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(1)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_verified(path: Path, digest: str | None, where: str) -> dict[str, np.ndarray]:
    """A predictions file's arrays after checking its sha256 against ``digest`` (the row's; None: unchecked)."""
    if digest is not None and sha256(path) != digest:
        raise DataError(f"{path}: sha256 {sha256(path)[:12]}… is not the {digest[:12]}… that {where} records: the "
                        "file is not the one the row was scored on. Restore it from the run (or its MLflow "
                        "artifact), or drop the row.")  # fmt: skip
    try:
        return predictions.read(path)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a fer-bench predictions file ({exc}). Give a run folder or its "
                        f"{predictions.FILE}.") from None  # fmt: skip


def _valid(row: dict[str, Any], run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The validation predictions named by the row (``predictions_valid``), else the file beside it."""
    ref = row.get("predictions_valid") or {}
    path = run_dir / ref.get("file", VALID_FILE)
    if not path.is_file():
        return None
    v = read_verified(path, ref.get("sha256"), f"{run_dir / 'result.json'} (predictions_valid)")
    return v["probs"], v["labels"]


def macro_classes(row: dict[str, Any]) -> tuple[int, ...] | None:
    """The indices (in the row's ``classes``, its predictions' columns) of the classes its macro-F1 averages: a
    cross-dataset row's shared classes; None (all classes) for any other row."""
    cross = row.get("cross_dataset")
    if not cross:
        return None
    return tuple(row["classes"].index(c) for c in cross["shared"])


def row_name(row: dict[str, Any]) -> str:
    """A row as a comparison names it: model, recipe with its version and settings hash, epochs, split and seed
    (two versions of one recipe are two names)."""
    version, digest = row.get("recipe_version"), row.get("recipe_hash")
    recipe = f"{row.get('recipe')}{f' v{version}' if version is not None else ''}"
    recipe += f" [{str(digest)[:8]}]" if digest else ""
    epochs = f" · {row['epochs']} ep" if row.get("epochs") is not None else ""
    return f"{row.get('model')} · {recipe}{epochs} · {row.get('split')} · seed {row.get('seed')}"


def load_row(row: dict[str, Any], run_dir: Path, name: str | None = None) -> Side | None:
    """The predictions a result row names, verified; None when the row names none or the file is not there."""
    ref = row.get("predictions")
    if not ref or not (run_dir / ref["file"]).is_file():
        return None
    path = run_dir / ref["file"]
    arrays = read_verified(path, ref.get("sha256"), str(run_dir / "result.json"))
    name = name or row_name(row)
    line = (row.get("model"), row.get("protocol_hash"), row.get("split"))
    return Side(name, path, arrays["probs"], arrays["labels"], arrays["ids"], _valid(row, run_dir), row.get("seed"),
                line, macro_classes(row))  # fmt: skip


def load_side(path: Path) -> Side:
    """A ``compare`` argument: a run folder (with result.json and its predictions) or a predictions file."""
    path = Path(path)
    if path.is_dir():
        result = path / "result.json"
        if not result.is_file():
            raise DataError(f"{path}: no result.json. Give a run folder of `fer-bench run` or a {predictions.FILE}.")
        side = load_row(json.loads(result.read_text()), path)
        if side is None:
            raise DataError(f"{path}: its row names no predictions file, or the file is missing. Runs write "
                            f"{predictions.FILE} since the 'converged rows' change; re-run the row.")  # fmt: skip
        return side
    if not path.is_file():
        raise DataError(f"{path} does not exist. Give a run folder or a {predictions.FILE}.")
    arrays = read_verified(path, None, "")
    return Side(str(path), path, arrays["probs"], arrays["labels"], arrays["ids"])


def align(a: Side, b: Side) -> Side:
    """``b`` reordered to ``a``'s sample ids; an error naming both files when their ids or labels differ."""
    only_a, only_b = np.setdiff1d(a.ids, b.ids), np.setdiff1d(b.ids, a.ids)
    if len(only_a) or len(only_b) or len(a.ids) != len(b.ids):
        raise DataError(f"{a.path} and {b.path} cover different samples: {len(only_a)} ids only in the first, "
                        f"{len(only_b)} only in the second ({len(a.ids)} vs {len(b.ids)} predictions). Compare "
                        "rows evaluated on the same split of the same data and dedup protocol.")  # fmt: skip
    sorter = np.argsort(b.ids, kind="stable")
    order = sorter[np.searchsorted(b.ids, a.ids, sorter=sorter)]
    if not np.array_equal(b.labels[order], a.labels):
        bad = int(np.sum(b.labels[order] != a.labels))
        raise DataError(f"{a.path} and {b.path}: {bad} samples with the same id carry other labels. The files come "
                        "from different label sets; compare rows of one dataset.")  # fmt: skip
    if a.average != b.average:
        raise DataError(f"{a.path} and {b.path}: their macro-F1 averages other classes ({a.average} vs {b.average}: "
                        "a cross-dataset row's shared classes). Compare rows scored under the same class "
                        "mapping.")  # fmt: skip
    return Side(b.name, b.path, b.probs[order], b.labels[order], b.ids[order], b.valid, b.seed, b.line, b.average)


def load_line(arg: str) -> list[Side]:
    """A ``compare`` argument: comma-separated run folders, predictions files or folders of run folders, all the
    runs (seeds) of one leaderboard line; sorted by seed."""
    sides = []
    for part in filter(None, (p.strip() for p in str(arg).split(","))):
        path = Path(part)
        runs = [] if (path / "result.json").is_file() else sorted(path.rglob("result.json")) if path.is_dir() else []
        sides += [load_side(r.parent) for r in runs] if runs else [load_side(path)]
    lines = {s.line for s in sides if s.line}
    if len(lines) > 1:
        raise DataError(f"{arg}: holds rows of {len(lines)} leaderboard lines ({', '.join(map(str, lines))}); give "
                        "the runs of one model, protocol and split (their folders, joined by commas).")  # fmt: skip
    seeds = [s.seed for s in sides]
    if len(sides) > 1 and len(set(seeds)) < len(seeds):
        raise DataError(f"{arg}: seeds {seeds} repeat; give each seed's run once.")
    return sorted(sides, key=lambda s: (s.seed is None, s.seed or 0))


def pair_by_seed(a: list[Side], b: list[Side]) -> list[tuple[Side, Side]]:
    """Seed s of A with seed s of B, the same seeds on both sides (one row each: those two); every run aligned to
    A's first run's sample order."""
    if len(a) == len(b) == 1:
        pairs = [(a[0], b[0])]
    else:
        seeds_a, seeds_b = [s.seed for s in a], [s.seed for s in b]
        if sorted(seeds_a, key=str) != sorted(seeds_b, key=str):
            raise DataError(f"A has seeds {seeds_a} and B {seeds_b}: lines pair seed by seed, none unpaired (one "
                            "seed never stands for a line). Give both lines' runs of the same seeds.")  # fmt: skip
        by_seed = {s.seed: s for s in b}
        pairs = [(s, by_seed[s.seed]) for s in a]
    ref = pairs[0][0]
    return [(align(ref, x), align(ref, y)) for x, y in pairs]


def summary(sides: list[Side], *, n_boot: int = stats.N_BOOT, seed: int = stats.SEED,
            level: float = stats.LEVEL) -> dict:  # fmt: skip
    """Top-1 and macro-F1 (the seeds' mean) with their bootstrap intervals, and calibration (mean over seeds;
    temperature-scaled when validation predictions are there)."""
    labels, k = sides[0].labels, sides[0].probs.shape[1]
    preds = np.stack([s.pred for s in sides])
    avg = sides[0].average
    point = {m: float(np.mean(v)) for m, v in stats.scores(np.broadcast_to(labels, preds.shape), preds, k,
                                                           avg).items()}  # fmt: skip
    ci = stats.bootstrap_interval(labels, preds, k, n_boot=n_boot, seed=seed, level=level, average=avg)
    out = {"name": sides[0].name, "paths": [str(s.path) for s in sides], "seeds": [s.seed for s in sides],
           "n": len(labels)}  # fmt: skip
    for m in ("top1", "macro_f1"):
        out |= {m: point[m], f"{m}_ci": list(ci[m])}
    cal = [calibration.summary(s.probs, s.labels, s.valid) for s in sides]
    return out | {key: float(np.mean([c[key] for c in cal])) for key in cal[0] if all(key in c for c in cal)}


def compare(a: Side | list[Side], b: Side | list[Side], *, n_boot: int = stats.N_BOOT, seed: int = stats.SEED,
            level: float = stats.LEVEL) -> dict:  # fmt: skip
    """Both sides' summaries and their paired comparison (McNemar on top-1, paired bootstrap of A − B), seed by
    seed when the sides are lines of several seeds."""
    pairs = pair_by_seed(*([x] if isinstance(x, Side) else x for x in (a, b)))
    sa, sb = [p[0] for p in pairs], [p[1] for p in pairs]
    labels, k = sa[0].labels, sa[0].probs.shape[1]
    pa, pb = np.stack([s.pred for s in sa]), np.stack([s.pred for s in sb])
    paired = {
        "n": len(labels),
        "seed_pairs": [[x.seed, y.seed] for x, y in pairs],
        "mcnemar": stats.mcnemar(pa == labels, pb == labels),
        "bootstrap": stats.paired_bootstrap(labels, pa, pb, k, n_boot=n_boot, seed=seed, level=level,
                                            average=sa[0].average),
    }
    opts = {"n_boot": n_boot, "seed": seed, "level": level}
    settings = opts | {"interval": "percentile bootstrap over test samples"}
    return {"a": summary(sa, **opts), "b": summary(sb, **opts), "paired": paired, "settings": settings}


def _side_line(tag: str, s: dict) -> str:
    ts = f", after T = {s['temperature']:.2f}: ECE {s['ece_ts']:.2f} %" if "temperature" in s else ""
    return (f"{tag}  top-1 {s['top1']:.2f} % [{s['top1_ci'][0]:.2f}, {s['top1_ci'][1]:.2f}]  macro-F1 "
            f"{s['macro_f1']:.2f} [{s['macro_f1_ci'][0]:.2f}, {s['macro_f1_ci'][1]:.2f}]  ECE {s['ece']:.2f} %  "
            f"NLL {s['nll']:.3f}  Brier {s['brier']:.3f}{ts}")  # fmt: skip


def _seeds_line(pairs: list[list]) -> str:
    if len(pairs) == 1:
        return f"one run each (seeds {pairs[0][0]} and {pairs[0][1]})"
    return (f"{len(pairs)} seed pairs ({', '.join(f'{x}–{y}' for x, y in pairs)}): the figures are the seeds' mean, "
            "McNemar's table pools the pairs, the bootstrap averages the pairs' differences")  # fmt: skip


def render(result: dict) -> str:
    """The comparison as text: each side, McNemar's table and test, the paired intervals of A − B."""
    a, b, p, st = result["a"], result["b"], result["paired"], result["settings"]
    mc, pct = p["mcnemar"], f"{st['level'] * 100:g} %"
    stat = f"χ² = {mc['statistic']:.3f}, " if mc["statistic"] is not None else ""
    lines = [f"A: {a['name']} ({', '.join(a['paths'])})", f"B: {b['name']} ({', '.join(b['paths'])})",
             _side_line("A", a), _side_line("B", b),
             f"paired on {p['n']} common sample ids; {pct} intervals: {st['interval']}, {st['n_boot']} resamples "
             f"(seed {st['seed']}), the same resampled ids for A and B", _seeds_line(p["seed_pairs"]),
             f"McNemar (top-1): both right {mc['both']}, only A right {mc['a_only']}, only B right {mc['b_only']}, "
             f"both wrong {mc['neither']}; {mc['method']}: {stat}p = {mc['p']:.4g}"]  # fmt: skip
    for m, label in (("top1", "top-1"), ("macro_f1", "macro-F1")):
        d = p["bootstrap"][m]
        lines.append(
            f"A − B {label}: {d['diff']:+.2f} pt [{d['lo']:+.2f}, {d['hi']:+.2f}] (bootstrap p = {d['p']:.3g})"
        )
    return "\n".join(lines)
