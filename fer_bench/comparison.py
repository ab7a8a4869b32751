"""Rows' per-sample predictions → intervals, calibration and a paired comparison (``fer-bench compare``).

A side is a run folder (its ``result.json`` names the predictions file and its sha256, which is checked) or a
predictions file itself. Two sides are paired by sample id (:func:`fer_bench.protocol.sample_ids`), never by
position, so rows whose data came from a CSV and from the folder tree pair up; sides that cover different ids are
an error, as are a file whose digest is not the one its row scored.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = predictions.write(d / "a.npz", np.eye(3)[[0, 1, 2, 0]], np.array([0, 1, 2, 1]), np.array(list("wxyz")))
    >>> _ = predictions.write(d / "b.npz", np.eye(3)[[0, 1, 2, 1]], np.array([0, 1, 2, 1]), np.array(list("wxyz")))
    >>> r = compare(load_side(d / "a.npz"), load_side(d / "b.npz"), n_boot=100)
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

VALID_FILE = "predictions-valid.npz"  # the validation hold-out's predictions, for temperature scaling


@dataclass(frozen=True)
class Side:
    """One row's test predictions (and, when written, its validation predictions)."""

    name: str
    path: Path
    probs: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    valid: tuple[np.ndarray, np.ndarray] | None = None

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


def load_row(row: dict[str, Any], run_dir: Path, name: str | None = None) -> Side | None:
    """The predictions a result row names, verified; None when the row names none or the file is not there."""
    ref = row.get("predictions")
    if not ref or not (run_dir / ref["file"]).is_file():
        return None
    path = run_dir / ref["file"]
    arrays = read_verified(path, ref.get("sha256"), str(run_dir / "result.json"))
    name = name or f"{row.get('model')} · {row.get('recipe')} · {row.get('split')} · seed {row.get('seed')}"
    return Side(name, path, arrays["probs"], arrays["labels"], arrays["ids"], _valid(row, run_dir))


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
    return Side(b.name, b.path, b.probs[order], b.labels[order], b.ids[order], b.valid)


def summary(side: Side, *, n_boot: int = stats.N_BOOT, seed: int = stats.SEED, level: float = stats.LEVEL) -> dict:
    """Top-1 and macro-F1 with their bootstrap intervals, and calibration (temperature-scaled when validation
    predictions are there)."""
    k = side.probs.shape[1]
    point = stats.scores(side.labels[None], side.pred[None], k)
    ci = stats.bootstrap_interval(side.labels, side.pred, k, n_boot=n_boot, seed=seed, level=level)
    out = {"name": side.name, "path": str(side.path), "n": len(side.labels)}
    for m in ("top1", "macro_f1"):
        out |= {m: float(point[m][0]), f"{m}_ci": list(ci[m])}
    return out | calibration.summary(side.probs, side.labels, side.valid)


def compare(a: Side, b: Side, *, n_boot: int = stats.N_BOOT, seed: int = stats.SEED,
            level: float = stats.LEVEL) -> dict:  # fmt: skip
    """Both rows' summaries and their paired comparison (McNemar on top-1, paired bootstrap of A − B)."""
    b = align(a, b)
    k = a.probs.shape[1]
    paired = {
        "n": len(a.labels),
        "mcnemar": stats.mcnemar(a.pred == a.labels, b.pred == b.labels),
        "bootstrap": stats.paired_bootstrap(a.labels, a.pred, b.pred, k, n_boot=n_boot, seed=seed, level=level),
    }
    opts = {"n_boot": n_boot, "seed": seed, "level": level}
    settings = opts | {"interval": "percentile bootstrap over test samples"}
    return {"a": summary(a, **opts), "b": summary(b, **opts), "paired": paired, "settings": settings}


def _side_line(tag: str, s: dict) -> str:
    ts = f", after T = {s['temperature']:.2f}: ECE {s['ece_ts']:.2f} %" if "temperature" in s else ""
    return (f"{tag}  top-1 {s['top1']:.2f} % [{s['top1_ci'][0]:.2f}, {s['top1_ci'][1]:.2f}]  macro-F1 "
            f"{s['macro_f1']:.2f} [{s['macro_f1_ci'][0]:.2f}, {s['macro_f1_ci'][1]:.2f}]  ECE {s['ece']:.2f} %  "
            f"NLL {s['nll']:.3f}  Brier {s['brier']:.3f}{ts}")  # fmt: skip


def render(result: dict) -> str:
    """The comparison as text: each side, McNemar's table and test, the paired intervals of A − B."""
    a, b, p, st = result["a"], result["b"], result["paired"], result["settings"]
    mc, pct = p["mcnemar"], f"{st['level'] * 100:g} %"
    stat = f"χ² = {mc['statistic']:.3f}, " if mc["statistic"] is not None else ""
    lines = [f"A: {a['name']} ({a['path']})", f"B: {b['name']} ({b['path']})", _side_line("A", a), _side_line("B", b),
             f"paired on {p['n']} common sample ids; {pct} intervals: {st['interval']}, {st['n_boot']} resamples "
             f"(seed {st['seed']}), the same resampled ids for A and B",
             f"McNemar (top-1): both right {mc['both']}, only A right {mc['a_only']}, only B right {mc['b_only']}, "
             f"both wrong {mc['neither']}; {mc['method']}: {stat}p = {mc['p']:.4g}"]  # fmt: skip
    for m, label in (("top1", "top-1"), ("macro_f1", "macro-F1")):
        d = p["bootstrap"][m]
        lines.append(
            f"A − B {label}: {d['diff']:+.2f} pt [{d['lo']:+.2f}, {d['hi']:+.2f}] (bootstrap p = {d['p']:.3g})"
        )
    return "\n".join(lines)
