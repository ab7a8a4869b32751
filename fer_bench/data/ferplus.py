"""FER+ (Barsoum et al. 2016): FER2013's faces relabelled by ten annotators each (``fer2013new.csv``).

``--data-dir`` is the folder holding ``fer2013new.csv``. The faces come from ``fer2013.csv`` beside it (row *i* of one
file is row *i* of the other, as in the reference code) or from the Kaggle folder tree at ``../fer2013`` (or
``ferplus:fer2013=PATH``), joined through ``msambare_to_ferplus.csv``; both give the same samples.

Labels follow the microsoft/FERPlus reference code (``src/ferplus.py``): single votes are dropped as outliers, then
``majority`` (the default, and always the rule for the test splits) keeps an image whose top class holds more than
half of the votes, and ``crossentropy`` (training only) trains on the vote distribution of the top classes. Images
whose top class is unknown or not-a-face are left out. Classes in FER+'s order; Training → train, PublicTest →
public, PrivateTest → private. The rules in full, the join's edge cases and the counts: docs/data.md. Each load
states its counts in ``FerData.notes``; a file whose rows do not line up with the faces is a DataError naming it.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_bench.data.base import FerData
from fer_bench.data.fer2013 import CSV_NAMES, read_fer2013
from fer_bench.data.labels import USAGE_TO_SPLIT
from fer_bench.data.spec import DatasetSpec, Option, existing_path, register
from fer_bench.utils.errors import DataError

CLASSES: tuple[str, ...] = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
HEADER = ("Usage", "Image name", *VOTE_COLUMNS)
N_EMOTIONS = len(CLASSES)  # columns from here on (unknown, NF) are not emotions
MAX_VOTES = 10  # ten annotators per face: a column's count is 0..10
LABEL_FILE, JOIN_FILE = "fer2013new.csv", "msambare_to_ferplus.csv"
GET = (
    "Point --data-dir at the folder holding fer2013new.csv (github.com/microsoft/FERPlus) with fer2013.csv beside it, "
    f"or with {JOIN_FILE} beside it and the Kaggle FER2013 tree at ../fer2013 (or --dataset ferplus:fer2013=PATH)."
)


@dataclass(frozen=True)
class VoteRows:
    """``fer2013new.csv``: per row its usage, image name and 10 votes."""

    path: Path
    usage: list[str]
    names: list[str]
    votes: np.ndarray  # int64 (rows, 10)


def read_votes(path: Path) -> VoteRows:
    """Parse ``fer2013new.csv`` (a UTF-8 byte-order mark is fine); a wrong header, field count, usage or vote is a
    DataError naming the line."""
    if not path.is_file():
        raise DataError(f"{path}: not found. {GET}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a text CSV ({exc}). {GET}") from None
    _check_header(path, rows[0] if rows else None)
    usage, names, votes = [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(HEADER) or row[0].strip() not in USAGE_TO_SPLIT:
            raise DataError(
                f"{path}, line {line}: expected {len(HEADER)} fields starting with one of "
                f"{', '.join(USAGE_TO_SPLIT)}, found {','.join(row)[:80]!r}. Use the unchanged FER+ file."
            )
        try:
            row_votes = [int(v) for v in row[2:]]
        except ValueError:
            raise DataError(f"{path}, line {line}: votes must be integers, found {row[2:]}.") from None
        if bad := [f"{c}={v}" for c, v in zip(VOTE_COLUMNS, row_votes, strict=True) if not 0 <= v <= MAX_VOTES]:
            raise DataError(f"{path}, line {line}: {', '.join(bad)}: a vote count is 0..{MAX_VOTES} (ten annotators "
                            "per face). Use the unchanged FER+ file.")  # fmt: skip
        votes.append(row_votes)
        usage.append(row[0].strip())
        names.append(row[1].strip())
    return VoteRows(path, usage, names, np.array(votes, dtype=np.int64).reshape(-1, len(VOTE_COLUMNS)))


def _check_header(path: Path, header: list[str] | None) -> None:
    """The header names HEADER's columns in HEADER's order; else the missing, unexpected or misplaced ones."""
    found = [c.strip() for c in header or []]
    if tuple(found) == HEADER:
        return
    missing, extra = [c for c in HEADER if c not in found], [c for c in found if c not in HEADER]
    parts = [f"missing column(s) {', '.join(missing)}"] if missing else []
    parts += [f"unexpected column(s) {', '.join(extra)}"] if extra else []
    problem = "; ".join(parts) or ("the file is empty" if header is None else "the columns are in another order")
    raise DataError(f"{path}, line 1: expected the header {','.join(HEADER)}; {problem}. {GET}")


def majority(votes: np.ndarray) -> int | None:
    """Majority rule (module docstring, 1, 2, 4): the emotion index, or None when the image is left out.

    Example:
        >>> majority(np.array([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]))  # 1 vote dropped: 4 of 9 is no majority
        >>> majority(np.array([6, 0, 1, 1, 0, 0, 0, 0, 2, 0]))
        0
    """
    v = np.where(votes > 1, votes, 0)
    top = int(np.argmax(v))
    return top if v[top] > 0.5 * v.sum() and top < N_EMOTIONS else None


def crossentropy(votes: np.ndarray) -> np.ndarray | None:
    """Distribution rule (module docstring, 1, 3, 4): 8 emotion probabilities, or None when left out.

    Example:
        >>> crossentropy(np.array([4, 0, 0, 2, 3, 0, 0, 0, 0, 0])).round(3).tolist()  # 4 + 3 of 9 is 75 %
        [0.571, 0.0, 0.0, 0.0, 0.429, 0.0, 0.0, 0.0]
    """
    v = np.where(votes > 1, votes, 0)
    total = v.sum()
    taken = np.zeros(len(v), dtype=np.int64)
    n_taken = 0
    for level in sorted({int(x) for x in v if x > 0}, reverse=True):
        if taken.sum() >= 0.75 * total or n_taken >= 3:
            break
        at = np.flatnonzero(v == level)
        bad = at[at >= N_EMOTIONS]
        if len(bad):  # unknown / not-a-face at this level: the emotions before it, or it alone if nothing was taken
            at = at[at < bad[0]]
            if not len(at) and not n_taken:
                at = bad[:1]
        taken[at], n_taken = v[at], n_taken + len(at)
        if len(bad):
            break
    if taken.sum() <= 0.5 * total or n_taken > 3 or int(np.argmax(taken)) >= N_EMOTIONS:
        return None
    emotions = taken[:N_EMOTIONS].astype(np.float64)
    return (emotions / emotions.sum()).astype(np.float32)


def read_ferplus(root: Path, cache_dir: Path, options: Mapping[str, str]) -> FerData:
    label_file = root / LABEL_FILE if root.is_dir() else root
    rows = read_votes(label_file)
    faces, row_of, notes = _join(label_file.parent, rows, cache_dir, options.get("fer2013", ""))
    keep, labels, soft, label_notes = _labels(rows, row_of, faces.splits, options["labels"])
    return FerData(
        "ferplus", np.ascontiguousarray(faces.images[keep]), labels, np.asarray(faces.splits[keep]), classes=CLASSES,
        source=f"{label_file} + {faces.source}", notes=notes + label_notes,
        paths=tuple(faces.paths[i] for i in keep) if faces.paths else (), soft=soft,
    )  # fmt: skip


def _labels(rows: VoteRows, row_of: np.ndarray, splits: np.ndarray, mode: str):
    """Kept sample indices, their labels and (crossentropy mode) training distributions, and the left-out counts."""
    keep, labels, dists = [], [], []
    dropped: dict[str, int] = defaultdict(int)
    for i in np.flatnonzero(row_of >= 0):
        votes = rows.votes[row_of[i]]
        soft_rule = mode == "crossentropy" and splits[i] == USAGE_TO_SPLIT["Training"]
        if soft_rule:
            dist = crossentropy(votes)
            label = None if dist is None else int(np.argmax(dist))
        else:
            label = majority(votes)
            dist = None if label is None else np.eye(N_EMOTIONS, dtype=np.float32)[label]
        if label is None:
            dropped[rows.usage[row_of[i]]] += 1
            continue
        keep.append(i), labels.append(label), dists.append(dist)
    rule = "majority (PublicTest, PrivateTest" + (")" if mode == "crossentropy" else " and Training)")
    notes = (f"labels: {rule}" + (", crossentropy distributions (Training)" if mode == "crossentropy" else ""),)
    notes += tuple(f"{n} {usage} image(s) left out: no label under the rule (top vote unknown or not a face, "
                   "or no majority)" for usage, n in sorted(dropped.items()))  # fmt: skip
    soft = np.stack(dists) if mode == "crossentropy" and dists else None
    return np.array(keep, dtype=np.int64), np.array(labels, dtype=np.int64), soft, notes


def _join(folder: Path, rows: VoteRows, cache_dir: Path, fer2013: str) -> tuple[FerData, np.ndarray, tuple[str, ...]]:
    """FER2013's faces and, per face, its fer2013new.csv row (-1: none), with the join's counts as notes."""
    csv_path = Path(fer2013) if fer2013 and Path(fer2013).is_file() else None
    csv_path = csv_path or next((folder / n for n in CSV_NAMES if (folder / n).is_file() and not fer2013), None)
    if csv_path is not None:
        faces = read_fer2013(csv_path, cache_dir)
        return (faces, *_join_rows(faces, rows))
    tree = Path(fer2013).expanduser() if fer2013 else folder.parent / "fer2013"
    if not (tree / "train").is_dir() or not (folder / JOIN_FILE).is_file():
        raise DataError(f"{folder}: found neither fer2013.csv nor the FER2013 tree {tree} with {JOIN_FILE}. {GET}")
    faces = read_fer2013(tree, cache_dir)
    return (faces, *_join_tree(faces, rows, folder / JOIN_FILE))


def _join_rows(faces: FerData, rows: VoteRows) -> tuple[np.ndarray, tuple[str, ...]]:
    """fer2013.csv: row i is face i; rows without an image name, and earlier rows of a reused name whose face
    differs from the later row's (the reference reads both against the later PNG), are left out."""
    want = np.array([USAGE_TO_SPLIT[u] for u in rows.usage], dtype=np.int8)
    if len(faces) != len(rows.usage) or not np.array_equal(np.asarray(faces.splits), want):
        n = min(len(faces), len(want))
        bad = next((i for i in range(n) if faces.splits[i] != want[i]), n)
        raise DataError(
            f"{rows.path}: its rows do not line up with {faces.source} ({len(rows.usage)} vs {len(faces)} rows; "
            f"first difference at data row {bad}). Use the unchanged fer2013new.csv and fer2013.csv."
        )
    row_of = np.where(np.array([bool(n) for n in rows.names]), np.arange(len(faces)), -1)
    last = {n: i for i, n in enumerate(rows.names) if n}
    reused = [i for i, n in enumerate(rows.names) if n and last[n] != i]
    lost = [i for i in reused if not np.array_equal(faces.images[i], faces.images[last[rows.names[i]]])]
    row_of[lost] = -1
    notes = (f"{int((row_of < 0).sum()) - len(lost)} row(s) without an image name left out",
             f"{len(lost)} row(s) whose image name a later row with another face reuses left out")  # fmt: skip
    return row_of, tuple(n for n in notes if not n.startswith("0 "))


def _join_tree(faces: FerData, rows: VoteRows, join_file: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """The Kaggle tree through the join file (module docstring: the rules)."""
    candidates = _read_join(join_file, faces, rows)
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, cand in enumerate(candidates):
        if cand:
            groups[cand].append(i)
    claimed = {r for cand in groups for r in cand}
    first_of = {n: i for i, n in reversed(list(enumerate(rows.names))) if n}
    row_of = np.full(len(faces), -1, dtype=np.int64)
    n_single = n_paired = n_renamed = 0
    for cand, members in groups.items():
        cand_rows = list(cand)
        if len(members) > len(cand_rows):  # a reused image name: its earlier row joins, if nobody claims it
            extra = [first_of[rows.names[r]] for r in cand_rows if first_of[rows.names[r]] not in claimed]
            cand_rows, n_renamed = sorted(cand_rows + extra), n_renamed + len(extra)
        if len(members) != len(cand_rows):
            raise DataError(
                f"{join_file}: {len(members)} identical image(s) ({faces.paths[members[0]]}…) but {len(cand_rows)} "
                f"candidate row(s) {cand_rows} in {rows.path.name}: they cannot be paired. Use the unchanged files."
            )
        row_of[members] = cand_rows
        n_single += len(members) == 1
        n_paired += len(members) if len(members) > 1 else 0
    used = set(row_of[row_of >= 0].tolist())
    unnamed = sum(1 for r, n in enumerate(rows.names) if not n)
    lost = [r for r, n in enumerate(rows.names) if n and r not in used]
    notes = (
        f"join: {n_single} image(s) took their one row; {n_paired} identical image(s) paired in order with as many "
        f"identical-pixel rows ({n_renamed} of them the earlier row of a reused image name)",
        f"{int((row_of < 0).sum())} image(s) match no row: left out",
        f"{unnamed} row(s) without an image name and {len(lost)} named row(s) with no face in the tree left out",
    )
    return row_of, notes


def _read_join(join_file: Path, faces: FerData, rows: VoteRows) -> list[tuple[int, ...]]:
    """Per face (in ``faces`` order), its candidate rows from the join file; every face must be listed."""
    index = {p: i for i, p in enumerate(faces.paths)}
    out: list[tuple[int, ...] | None] = [None] * len(faces)
    with join_file.open(newline="", encoding="utf-8-sig") as f:
        for line, rec in enumerate(csv.DictReader(f), start=2):
            i = index.get(rec.get("path", ""))
            try:
                cand = tuple(int(r) for r in (rec.get("fer2013new_row_indices") or "").split(";") if r)
            except ValueError:
                cand = (-1,)
            if i is None or any(not 0 <= r < len(rows.usage) or rows.usage[r] != rec.get("usage") for r in cand):
                raise DataError(
                    f"{join_file}, line {line}: {rec.get('path')!r} → rows {cand} do not line up with "
                    f"{faces.source} and {rows.path} (unknown path, row out of range or another usage). "
                    "Use the join file made for these copies."
                )
            out[i] = cand
    missing = [faces.paths[i] for i, c in enumerate(out) if c is None]
    if missing:
        raise DataError(f"{join_file}: {len(missing)} image(s) of the tree are not listed (e.g. {missing[0]}).")
    return out  # type: ignore[return-value]


register(DatasetSpec(
    name="ferplus",
    reader=read_ferplus,
    description="FER+: FER2013's faces with 10 annotators' votes each (fer2013new.csv), 8 classes",
    classes=CLASSES, channels=1, size=48,
    splits={"train": "Training", "public": "PublicTest (FER+ valid)", "private": "PrivateTest (FER+ test)"},
    split_sizes={"train": 25_059, "public": 3_199, "private": 3_152},  # majority; crossentropy: 27,955 train
    labels="hard|soft",
    citation="Barsoum et al., Training Deep Networks for Facial Expression Recognition with Crowd-Sourced Label "
             "Distribution, ICMI 2016 (arXiv 1608.01041); github.com/microsoft/FERPlus",
    get=GET,
    options={
        "labels": Option("majority", ("majority", "crossentropy"), "training labels: majority, or vote distributions"),
        "fer2013": Option("", None, "FER2013's fer2013.csv or Kaggle tree (default: beside or ../fer2013)",
                          check=existing_path),
    },
    reads_file=True,
))  # fmt: skip
