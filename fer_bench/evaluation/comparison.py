"""Rows' per-sample predictions → intervals, calibration and a paired comparison (``fer-bench compare``).

A side is a run folder (its ``result.json`` names the predictions file and its sha256, which is checked), a
predictions file, or the runs of one leaderboard line (several seeds: a folder that holds their run folders, or
paths joined by commas). Predictions are paired by sample id (:func:`fer_bench.experiment.protocol.sample_ids`), never
by position, so rows whose data came from a CSV and from the folder tree pair up; sides that cover different ids are
an error, as are a file whose digest is not the one its row scored. Both sides are put in one face order, the
sorted sample ids (:func:`paired_arrays`), so ``compare`` and the leaderboard hand :mod:`fer_bench.evaluation.stats` the
same arrays and get the same p and intervals. Lines of several seeds are never paired seed by seed: each face counts
once, its predictions averaged over the line's seeds (:func:`fer_bench.evaluation.stats.paired_test`), and the lines may
have different seeds.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = predictions.write(d / "a.npz", np.eye(3)[[0, 1, 2, 0]], np.array([0, 1, 2, 1]), np.array(list("wxyz")))
    >>> _ = predictions.write(d / "b.npz", np.eye(3)[[0, 1, 2, 1]], np.array([0, 1, 2, 1]), np.array(list("wxyz")))
    >>> r = compare(load_line(str(d / "a.npz")), load_line(str(d / "b.npz")), n_boot=100)
    >>> r["paired"]["faces"]["b_better"], r["paired"]["test"]["top1"]["p"]
    (1, 1.0)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_bench.evaluation import calibration, predictions, stats
from fer_bench.utils.errors import DataError
from fer_bench.utils.io import file_sha256, row_files

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


def read_verified(path: Path, digest: str | None, where: str) -> dict[str, np.ndarray]:
    """A predictions file's arrays after checking its sha256 against ``digest`` (the row's; None: unchecked)."""
    if digest is not None and (found := file_sha256(path)) != digest:
        raise DataError(f"{path}: sha256 {found[:12]}… is not the {digest[:12]}… that {where} records: the "
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


def line_name(sides: list[Side]) -> str:
    """The name of a line's runs: its first run's name, and for several runs every seed instead of the first's."""
    name = sides[0].name
    if len(sides) < 2:
        return name
    seeds = ", ".join("?" if s.seed is None else str(s.seed) for s in sides)
    return f"{name.removesuffix(f' · seed {sides[0].seed}')} · seeds {seeds}"


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
    row = path.parent / "result.json"
    if row.is_file() and (json.loads(row.read_text()).get("predictions") or {}).get("file") == path.name:
        return load_side(path.parent)  # a run's own file: the run, with its seed, line and checksum
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
        runs = [] if (path / "result.json").is_file() else row_files(path) if path.is_dir() else []
        sides += [load_side(r.parent) for r in runs] if runs else [load_side(path)]
    lines = {s.line for s in sides if s.line}
    if len(lines) > 1:
        raise DataError(f"{arg}: holds rows of {len(lines)} leaderboard lines ({', '.join(map(str, lines))}); give "
                        "the runs of one model, protocol and split (their folders, joined by commas).")  # fmt: skip
    if not sides:
        raise DataError(f"{arg!r} names no run. Give run folders or predictions files, joined by commas.")
    held: dict[str, Side] = {}
    for s in sides:  # a run named twice, or a copy of a seedless file, is one run, not two seeds
        first = held.setdefault(file_sha256(s.path), s)
        if first is not s and (None in (first.seed, s.seed) or first.path.resolve() == s.path.resolve()):
            raise DataError(f"{arg}: {first.path} and {s.path} hold the same predictions (one run named twice); "
                            "give each run once.")  # fmt: skip
    seeds = [s.seed for s in sides if s.seed is not None]  # a bare predictions file carries no seed
    if len(set(seeds)) < len(seeds):
        raise DataError(f"{arg}: seeds {sorted(seeds)} repeat; give each seed's run once.")
    return sorted(sides, key=lambda s: (s.seed is None, s.seed or 0))


def paired_arrays(a: list[Side], b: list[Side]) -> tuple[list[Side], list[Side]]:
    """Both lines' runs aligned to one face order, the sorted sample ids: the order every paired statistic sees, so
    the same two lines give the same figures whichever side, file order or caller."""
    first = a[0]
    order = np.argsort(first.ids, kind="stable")
    ref = dataclasses.replace(first, probs=first.probs[order], labels=first.labels[order], ids=first.ids[order])
    return [align(ref, s) for s in a], [align(ref, s) for s in b]


def _preds(sides: list[Side]) -> np.ndarray:
    return np.stack([s.pred for s in sides])


def _per_seed(sides: list[Side]) -> dict[str, np.ndarray]:
    """Each run's own top-1 and macro-F1 (the values the seeds' t interval is over)."""
    labels, k = sides[0].labels, sides[0].probs.shape[1]
    preds = _preds(sides)
    return stats.scores(np.broadcast_to(labels, preds.shape), preds, k, sides[0].average)


def summary(sides: list[Side], *, n_boot: int = stats.N_BOOT, seed: int = stats.SEED,
            level: float = stats.LEVEL) -> dict:  # fmt: skip
    """Top-1 and macro-F1 (the seeds' mean) with their face-bootstrap intervals and, for several seeds, the t
    interval over the seeds' own figures (``*_seeds_ci``); calibration (mean over seeds; temperature-scaled when
    validation predictions are there) with bootstrap intervals of ECE and NLL."""
    sides = paired_arrays(sides, sides)[0]
    labels, k, avg = sides[0].labels, sides[0].probs.shape[1], sides[0].average
    per_seed = _per_seed(sides)
    ci = stats.bootstrap_interval(labels, _preds(sides), k, n_boot=n_boot, seed=seed, level=level, average=avg)
    out = {"name": line_name(sides), "paths": [str(s.path) for s in sides], "seeds": [s.seed for s in sides],
           "n": len(labels)}  # fmt: skip
    for m in ("top1", "macro_f1"):
        t = stats.seed_summary(per_seed[m], level)
        out |= {m: t["mean"], f"{m}_ci": list(ci[m])} | ({f"{m}_seeds_ci": [t["lo"], t["hi"]]} if t["n"] > 1 else {})
    cal = [calibration.summary(s.probs, s.labels, s.valid) for s in sides]
    out |= {key: float(np.mean([c[key] for c in cal])) for key in cal[0] if all(key in c for c in cal)}
    line = calibration.line_probs([s.probs for s in sides], [s.valid for s in sides])
    boot = calibration.bootstrap(line, labels, n_boot=n_boot, seed=seed, level=level)
    return out | {f"{key}_ci": list(v) for key, v in boot.items()}


def paired(sa: list[Side], sb: list[Side], *, n_boot: int = stats.N_BOOT, n_perm: int = stats.N_PERM,
           seed: int = stats.SEED, level: float = stats.LEVEL, calibration_too: bool = True) -> dict:  # fmt: skip
    """The paired comparison of two lines (already in :func:`paired_arrays`' order): the test (p of top-1 and
    macro-F1), the face-bootstrap intervals of A − B (and of ΔECE, ΔNLL), Welch's t interval over the seeds when
    both lines have several, the smallest difference the test detects at this test-set size, and the claim
    (:func:`fer_bench.evaluation.stats.claim`: ``<``, ``>`` or ``≈`` for A against B)."""
    labels, k, avg = sa[0].labels, sa[0].probs.shape[1], sa[0].average
    pa, pb = _preds(sa), _preds(sb)
    boot = stats.paired_bootstrap(labels, pa, pb, k, n_boot=n_boot, seed=seed, level=level, average=avg)
    out = {"n": len(labels), "seeds_a": [s.seed for s in sa], "seeds_b": [s.seed for s in sb],
           "faces": stats.face_counts(labels, pa, pb),
           "test": stats.paired_test(labels, pa, pb, k, n_perm=n_perm, seed=seed, average=avg), "bootstrap": boot,
           "mde": {m: stats.minimum_detectable_effect(boot[m]["se"]) for m in boot}}  # fmt: skip
    if len(sa) > 1 and len(sb) > 1:
        seeds_a, seeds_b = _per_seed(sa), _per_seed(sb)
        out["seeds"] = {m: stats.seed_difference(seeds_a[m], seeds_b[m], level) for m in ("top1", "macro_f1")}
    seeds = out.get("seeds", dict.fromkeys(("top1", "macro_f1"), {"lo": float("nan"), "hi": float("nan")}))
    out["claim"] = {m: stats.claim(out["test"][m]["p"], boot[m]["diff"], seeds[m]["lo"], seeds[m]["hi"])
                    for m in ("top1", "macro_f1")}  # fmt: skip
    if calibration_too:
        lines = [calibration.line_probs([s.probs for s in x], [s.valid for s in x]) for x in (sa, sb)]
        out["calibration"] = calibration.paired_bootstrap(*lines, labels, n_boot=n_boot, seed=seed, level=level)
    return out


def compare(a: Side | list[Side], b: Side | list[Side], *, n_boot: int = stats.N_BOOT, n_perm: int = stats.N_PERM,
            seed: int = stats.SEED, level: float = stats.LEVEL) -> dict:  # fmt: skip
    """Both sides' summaries and their paired comparison (:func:`paired`); a side is one run or the runs (seeds) of
    one line, and the two lines may have different seeds."""
    sa, sb = paired_arrays(*([x] if isinstance(x, Side) else list(x) for x in (a, b)))
    opts = {"n_boot": n_boot, "seed": seed, "level": level}
    settings = opts | {"n_perm": n_perm, "interval": "percentile bootstrap over test faces", "test": stats.METHOD}
    return {
        "a": summary(sa, **opts),
        "b": summary(sb, **opts),
        "paired": paired(sa, sb, n_perm=n_perm, **opts),
        "settings": settings,
    }


CLAIMS = {"<": "A below B", ">": "A above B", "≈": "no difference claimed",
          "‹": "A below B on these trained runs (one seed on a side: no claim about the lines)",
          "›": "A above B on these trained runs (one seed on a side: no claim about the lines)"}  # fmt: skip


def _ci(v: list) -> str:
    return f"[{v[0]:.2f}, {v[1]:.2f}]"


def _side_line(tag: str, s: dict) -> str:
    seeds = {m: f" (seeds' t {_ci(s[f'{m}_seeds_ci'])})" if f"{m}_seeds_ci" in s else "" for m in ("top1", "macro_f1")}
    ts = (f", after T = {s['temperature']:.2f}: ECE {s['ece_ts']:.2f} % {_ci(s['ece_ts_ci'])}"
          if "temperature" in s else "")  # fmt: skip
    return (f"{tag}  top-1 {s['top1']:.2f} % {_ci(s['top1_ci'])}{seeds['top1']}  macro-F1 {s['macro_f1']:.2f} "
            f"{_ci(s['macro_f1_ci'])}{seeds['macro_f1']}  ECE {s['ece']:.2f} % {_ci(s['ece_ci'])}  NLL "
            f"{s['nll']:.3f} [{s['nll_ci'][0]:.3f}, {s['nll_ci'][1]:.3f}]  Brier {s['brier']:.3f}{ts}")  # fmt: skip


def _seeds_line(p: dict) -> str:
    a, b = p["seeds_a"], p["seeds_b"]
    if len(a) == len(b) == 1:
        return f"one run each (seeds {a[0]} and {b[0]})"
    return (f"A: seeds {a}, B: seeds {b}; each line's figure is its seeds' mean, each face counts once (its "
            "predictions averaged over the line's seeds)")  # fmt: skip


def _diff_line(label: str, m: str, p: dict) -> str:
    d, t = p["bootstrap"][m], p["test"][m]
    test = (f"exact permutation p = {t['p']:.3g}" if not t["rounds"] else
            f"permutation p = {t['p']:.3g} (Monte Carlo SE {t['mc_se']:.4f}, {t['rounds']} rounds)")  # fmt: skip
    seeds = f"; seeds' Welch t {d['diff']:+.2f} [{p['seeds'][m]['lo']:+.2f}, {p['seeds'][m]['hi']:+.2f}]" if (
        "seeds" in p) else ""  # fmt: skip
    verdict = CLAIMS[p["claim"][m]]
    return f"A − B {label}: {d['diff']:+.2f} pt [{d['lo']:+.2f}, {d['hi']:+.2f}]{seeds}; {test}; {verdict}"


def _calibration_line(cal: dict) -> str:
    parts = [f"{name} {cal[key]['diff']:+.{digits}f} [{cal[key]['lo']:+.{digits}f}, {cal[key]['hi']:+.{digits}f}]"
             for key, name, digits in (("ece", "ECE", 2), ("nll", "NLL", 3), ("ece_ts", "ECE after T", 2),
                                       ("nll_ts", "NLL after T", 3)) if key in cal]  # fmt: skip
    return "A − B calibration: " + ", ".join(parts)


def render(result: dict) -> str:
    """The comparison as text: each side, the faces on which they differ, the paired intervals and test of A − B."""
    a, b, p, st = result["a"], result["b"], result["paired"], result["settings"]
    f, pct = p["faces"], f"{st['level'] * 100:g} %"
    lines = [f"A: {a['name']} ({', '.join(a['paths'])})", f"B: {b['name']} ({', '.join(b['paths'])})",
             _side_line("A", a), _side_line("B", b),
             f"paired on {p['n']} common sample ids; {pct} intervals: {st['interval']}, {st['n_boot']} resamples "
             f"(seed {st['seed']}), the same resampled ids for A and B; test: {st['test']}, {st['n_perm']} rounds "
             f"(seed {st['seed']})", _seeds_line(p),
             f"faces: A right more often {f['a_better']}, B right more often {f['b_better']}, tied {f['tied']}",
             _diff_line("top-1", "top1", p), _diff_line("macro-F1", "macro_f1", p), _calibration_line(p["calibration"]),
             f"smallest difference the test detects (α = {stats.ALPHA}, power {stats.POWER}, "
             f"{stats.minimum_detectable_effect(1.0):.2f} × the paired bootstrap SE): top-1 {p['mde']['top1']:.2f} "
             f"pt, macro-F1 {p['mde']['macro_f1']:.2f} pt"]  # fmt: skip
    return "\n".join(lines)
