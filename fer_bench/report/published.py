"""Published reference rows (``configs/published.yaml``): the papers' FER2013 figures and how each was measured.

A bare "72.9 %" misleads beside a fer-bench row: papers differ in the test split, test-time augmentation,
pretraining, input size, training length and whether the validation split was trained on. Each row therefore
states all of these (``null``/``unstated`` where the source does not say) and cites its source. Parsing is as strict
as a recipe's (:func:`fer_bench.recipes.from_dict`): unknown keys, missing keys, wrong types and values outside the
allowed sets are :class:`~fer_bench.utils.errors.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fer_bench.recipes import from_dict
from fer_bench.recipes.parts import TTA_MODES
from fer_bench.utils.errors import ConfigError

PUBLISHED = Path(__file__).resolve().parents[1] / "configs" / "published.yaml"  # ships inside the package

SPLITS = ("public", "private", "test", "unstated")  # test = PublicTest + PrivateTest, as in fer-bench
TTA = (*TTA_MODES, "used", "unstated")  # the registry's modes; used: TTA applied, its kind not named by the source
PRETRAINING = ("none", "imagenet", "unstated")
TRAINED_ON = ("train", "train+val", "unstated")  # train+val: the validation split was trained on too
QUALIFIERS = ("source", "tta", "pretrained", "input_size", "epochs", "trained_on", "note")  # shown beside a row


@dataclass(frozen=True)
class ReferenceRow:
    """One published figure. Fields without a default must be present in the file (``null`` where unstated)."""

    model: str  # the fer-bench registry name of the backbone
    recipe: str  # the fer-bench recipe reproducing the paper, or a label for a comparison table
    source: str  # paper (arXiv id, section or table) or repository file the figure is read from
    split: str  # SPLITS
    top1: float | None
    macro_f1: float | None
    tta: str  # TTA
    pretrained: str  # PRETRAINING
    input_size: int | None  # pixels the network saw
    epochs: tuple[int, ...] | None  # one entry per training phase
    trained_on: str  # TRAINED_ON
    f1_angry: float | None = None
    f1_disgust: float | None = None
    f1_fear: float | None = None
    f1_happy: float | None = None
    f1_sad: float | None = None
    f1_surprise: float | None = None
    f1_neutral: float | None = None
    params_m: float | None = None  # only the 7-class network's count (ImageNet papers quote 1000-class heads)
    note: str = ""


CHOICES = {"split": SPLITS, "tta": TTA, "pretrained": PRETRAINING, "trained_on": TRAINED_ON}
PERCENT = ("top1", "macro_f1", *(f.name for f in dataclasses.fields(ReferenceRow) if f.name.startswith("f1_")))


def load_published(path: Path = PUBLISHED) -> list[ReferenceRow]:
    """Read and check the reference rows.

    Example:
        >>> rows = load_published()
        >>> next(r for r in rows if r.model == "vgg_khaireddin").tta
        'tencrop'
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}).") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{path}: reference rows must be a non-empty list of mappings (- model: …, source: …).")
    rows = [_row(path, i, item) for i, item in enumerate(data)]
    seen: set[tuple[str, str, str]] = set()
    for i, r in enumerate(rows):
        if (r.model, r.recipe, r.split) in seen:
            raise ConfigError(f"{path}: [{i}] repeats model/recipe/split {r.model}/{r.recipe}/{r.split}; merge them.")
        seen.add((r.model, r.recipe, r.split))
    return rows


def _row(path: Path, i: int, item: Any) -> ReferenceRow:
    if not isinstance(item, dict):
        raise ConfigError(f"{path}: [{i}] must be a mapping (model: …, source: …), found {item!r}.")
    required = [f.name for f in dataclasses.fields(ReferenceRow) if f.default is dataclasses.MISSING]
    missing = [k for k in required if k not in item]
    if missing:
        raise ConfigError(f"{path}: [{i}] lacks {', '.join(missing)}; every row states them (null or 'unstated' "
                          f"where the source does not say).")  # fmt: skip
    row = from_dict(ReferenceRow, item, str(path), prefix=f"[{i}].")
    problem = _problem(row)
    if problem:
        key, expected = problem
        raise ConfigError(f"{path}: [{i}].{key} = {getattr(row, key)!r} is not allowed; expected {expected}.")
    return row


def _problem(row: ReferenceRow) -> tuple[str, str] | None:
    """The first value out of its allowed set or range, as (key, what is expected)."""
    for key, allowed in CHOICES.items():
        if getattr(row, key) not in allowed:
            return key, f"one of {', '.join(allowed)}"
    if not row.source.strip():
        return "source", "the paper or repository file the figure comes from"
    for key in PERCENT:
        v = getattr(row, key)
        if v is not None and not 0 <= v <= 100:
            return key, "a figure on the 0-100 scale, or null"
    if row.top1 is None and row.macro_f1 is None:
        return "top1", "a figure (top1 or macro_f1 must be given)"
    checks = {
        "params_m": row.params_m is None or row.params_m > 0,
        "input_size": row.input_size is None or row.input_size > 0,
        "epochs": row.epochs is None or (len(row.epochs) > 0 and min(row.epochs) > 0),
    }
    bad = [k for k, ok in checks.items() if not ok]
    return (bad[0], "a positive number, or null") if bad else _f1_problem(row)


def _f1_problem(row: ReferenceRow) -> tuple[str, str] | None:
    """With every per-class F1 given, macro-F1 is their mean: a typo in one of them shows here."""
    f1 = [getattr(row, k) for k in PERCENT[2:]]
    if row.macro_f1 is None or None in f1:
        return None
    mean = sum(f1) / len(f1)
    return None if abs(mean - row.macro_f1) <= 0.1 else ("macro_f1", f"the mean of the per-class F1 ({mean:.2f})")


def published_frame(path: Path = PUBLISHED) -> pd.DataFrame:
    """The reference rows as one frame: model, recipe, split, top1, macro_f1, f1_<class>, params_m and the
    qualifiers (:data:`QUALIFIERS`); ``epochs`` reads "300+50" for a row with two training phases."""
    records = []
    for row in load_published(path):
        rec = dataclasses.asdict(row)
        rec["epochs"] = "+".join(map(str, row.epochs)) if row.epochs else None
        records.append(rec)
    order = ["model", "recipe", "split", "top1", "macro_f1", *PERCENT[2:], "params_m", *QUALIFIERS]
    df = pd.DataFrame.from_records(records, columns=order)
    df["input_size"] = df["input_size"].astype("Int64")  # 224, not 224.0, beside rows that have none
    return df
