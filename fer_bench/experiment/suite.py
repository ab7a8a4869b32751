"""Benchmark suites: models × recipes × seeds × evaluation splits, as one YAML file anyone can re-run.

Each *cell* (one model entry × one seed) trains once and is scored on every split the suite lists; each (cell,
split) is one result row, one run folder (named as ``fer-bench run`` names it) and one MLflow child run tagged
``fer_bench.suite`` / ``fer_bench.cell``. A rerun skips the cells finished *under the same protocol hash* and resumes
a killed one from its last checkpoint. ``--shard K/N`` (:mod:`fer_bench.experiment.shards`), ``budget_s``
(:mod:`fer_bench.experiment.pilots`) and ``blind: true`` (validation rows only until ``--unblind``) are described in
docs/benchmarks.md.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fer_bench.experiment.pilots import budget_epochs
from fer_bench.experiment.tracking import CELL_TAG, KIND_TAG, SUITE_TAG
from fer_bench.recipes import from_dict, load_recipe
from fer_bench.recipes.schema import EVAL_SPLITS, Recipe
from fer_bench.report.leaderboard import FORMATS as TABLE_FORMATS
from fer_bench.utils.errors import ConfigError

LEADERBOARD_FORMATS = ("csv", *TABLE_FORMATS)  # what fer_bench.report.leaderboard.render writes


@dataclass(frozen=True)
class SuiteModel:
    """One line of the suite: a backbone, its recipe and overrides (``key=value``, as ``--set`` takes them)."""

    model: str
    recipe: str | None = None  # None: the backbone's default recipe
    set: tuple[str, ...] = ()
    splits: tuple[str, ...] | None = None  # None: the suite's splits (Khaireddin validates on private: public only)


@dataclass(frozen=True)
class LeaderboardSpec:
    formats: tuple[str, ...] = ("md", "csv")
    per_class: bool = True  # per-class F1 columns
    published: bool = True  # the papers' numbers as "published" rows
    plot: bool = True  # pareto.png
    title: str = ""  # above the tables; a budgeted suite's default says its budget ("45 CPU-minutes per backbone")


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    description: str = ""
    dataset: str = "fer2013"
    data_dir: str | None = None  # relative to the working directory; --data-dir overrides
    experiment: str | None = None  # MLflow experiment (default: the suite's name)
    seeds: tuple[int, ...] = (0,)
    splits: tuple[str, ...] = ("test",)  # evaluation splits; every cell is evaluated on each
    set: tuple[str, ...] = ()  # overrides for every cell, before each model's own
    models: tuple[SuiteModel, ...] = ()
    leaderboard: LeaderboardSpec = field(default_factory=LeaderboardSpec)
    expected_wall: str = ""  # documentation: the wall time this suite takes where it was designed to run
    # the corruption suite (fer_bench.data.corruptions) on every row a cell writes: names, or [all]; empty = none
    corruptions: tuple[str, ...] = ()
    corruption_severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    # Training seconds per cell: each line trains E = max(1, round(budget_s / t)) epochs, t its median epoch wall time
    # in the pilots file. None: the recipes' epochs.
    budget_s: float | None = None
    pilots: str | None = None  # the pilots file, relative to the suite file (`fer-bench run --suite S --pilot`)
    blind: bool = False  # no test figure until every cell has its validation row; then `fer-bench run --unblind`


@dataclass(frozen=True)
class Cell:
    """One training run of a suite, evaluated on ``splits`` (the first split is the run's own)."""

    model: str
    recipe: Recipe
    splits: tuple[str, ...]
    id: str
    line: str = ""  # the suite line it belongs to (:func:`line_id`): the cell id without the seed


def load_suite(path: Path, pilot: bool = False) -> SuiteSpec:
    """Read and validate a suite file: unknown keys, types, models, recipes, splits and every cell's recipe.

    ``pilots`` is resolved against the suite file's folder; with ``budget_s`` the pilots file must time every line,
    unless ``pilot`` (the run that writes it).
    """
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"suite file {str(path)!r}: cannot read ({exc.strerror}).") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite must be a mapping (name, models, seeds, splits...).")
    suite: SuiteSpec = from_dict(SuiteSpec, data, str(path))
    if not suite.models:
        raise ConfigError(f"{path}: models is empty; list at least one {{model: NAME, recipe: NAME}}.")
    if not suite.seeds:
        raise ConfigError(f"{path}: seeds is empty; give at least one, e.g. seeds: [0].")
    for where, splits in [("splits", suite.splits)] + [(f"models[{i}].splits", m.splits or ())
                                                        for i, m in enumerate(suite.models)]:  # fmt: skip
        bad = [s for s in splits if s not in EVAL_SPLITS]
        if bad or (where == "splits" and not splits):
            raise ConfigError(f"{path}: {where} = {list(splits)}; expected a list of {', '.join(EVAL_SPLITS)}.")
    bad = [f for f in suite.leaderboard.formats if f not in LEADERBOARD_FORMATS]
    if bad:
        raise ConfigError(f"{path}: leaderboard.formats has {bad}; expected some of {', '.join(LEADERBOARD_FORMATS)}.")
    if suite.budget_s is not None and (suite.budget_s <= 0 or not suite.pilots):
        raise ConfigError(f"{path}: budget_s = {suite.budget_s} needs a number > 0 and pilots: FILE (the epoch timings "
                          f"`fer-bench run --suite {path} --pilot` writes).")  # fmt: skip
    if suite.pilots:
        suite = replace(suite, pilots=str(path.parent / suite.pilots))
    # every cell's recipe must resolve, or the file is rejected now, not hours later
    cells(suite, source=str(path), budget=not pilot)
    corruption_plan(suite, str(path))
    return suite


def corruption_plan(suite: SuiteSpec, source: str = "suite"):
    """The suite's corruption plan (fer_bench.experiment.rescoring.CorruptionPlan), or None when it lists no
    corruptions."""
    if not suite.corruptions:
        return None
    from fer_bench.data.corruptions import parse_corruptions, parse_severities
    from fer_bench.experiment.rescoring import CorruptionPlan

    try:
        names = parse_corruptions(",".join(suite.corruptions))
        severities = parse_severities(",".join(map(str, suite.corruption_severities)))
    except ConfigError as exc:
        raise ConfigError(f"{source}: corruptions: {exc}") from None
    return CorruptionPlan(names, severities)


def cells(
    suite: SuiteSpec, extra_sets: list[str] | None = None, source: str = "suite", budget: bool = True
) -> list[Cell]:
    """Every (model entry × seed) of the suite, sorted by id, with its resolved recipe.

    With ``budget_s`` (and ``budget``) each line's epochs come from the pilots file (:func:`budget_epochs`), before
    ``extra_sets``: a command line's ``--epochs`` still wins (a smoke run).
    """
    from fer_bench.models import get_spec
    from fer_bench.recipes import default_recipe
    from fer_bench.recipes.checks import frozen_without_weights

    out, names = [], []
    for i, entry in enumerate(suite.models):
        try:
            names.append(entry.recipe or default_recipe(get_spec(entry.model)))
        except ConfigError as exc:
            raise ConfigError(f"{source}: models[{i}].model: {exc}") from None
    lines = [line_id(entry, name) for entry, name in zip(suite.models, names, strict=True)]
    budgeted = budget_epochs(suite, lines, source) if budget and suite.budget_s is not None else {}
    for i, (entry, name, line) in enumerate(zip(suite.models, names, lines, strict=True)):
        splits = entry.splits or suite.splits
        epochs = [f"train.epochs={budgeted[line]}"] if budgeted else []
        for seed in suite.seeds:
            sets = [*suite.set, *entry.set, *epochs, *(extra_sets or []), f"train.seed={seed}",
                    f"eval.split={splits[0]}"]  # fmt: skip
            try:
                recipe = load_recipe(name, sets, _origins(suite.set, entry.set, extra_sets or []))
            except ConfigError as exc:
                raise ConfigError(f"{source}: models[{i}] ({entry.model}, recipe {name}): {exc}") from None
            if recipe.data.val_source in splits:
                raise ConfigError(
                    f"{source}: models[{i}] ({entry.model}) validates on {recipe.data.val_source} "
                    f"(recipe {recipe.name}), so it cannot be tested on it; set models[{i}].splits without it."
                )
            if reason := frozen_without_weights(recipe, has_weights=recipe.input.pretrained):  # no --weights in suites
                raise ConfigError(f"{source}: models[{i}] ({entry.model}): {reason}")
            out.append(Cell(entry.model, recipe, tuple(splits), cell_id(entry, name, seed), line))
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"{source}: the same cell is listed twice ({', '.join(dup)}); remove the duplicate line.")
    return sorted(out, key=lambda c: c.id)


def _origins(suite_sets, entry_sets, extra_sets) -> dict[str, str]:
    """Each overridden key -> where its value came from: the suite file's ``set:`` lists, or the command line."""
    written = [*(f"set {s}" for s in (*suite_sets, *entry_sets)), *(f"--set {s}" for s in extra_sets)]
    return {w.split(" ", 1)[1].partition("=")[0].strip(): w for w in written}


def cell_id(entry: SuiteModel, recipe: str | None, seed: int) -> str:
    """``<model>-<recipe>-s<seed>``, plus a short hash of the line's own overrides when it has any."""
    return f"{line_id(entry, recipe)}-s{seed}"


def line_id(entry: SuiteModel, recipe: str | None) -> str:
    """``<model>-<recipe>``, plus a short hash of the line's own overrides when it has any: a line's cells' ids
    without the seed, and its key in the pilots file."""
    base = f"{entry.model}-{recipe or 'defaults'}"
    if entry.set:
        base += "-" + hashlib.sha256("|".join(entry.set).encode()).hexdigest()[:6]
    return base


def result_file(out: Path, cell: Cell, split: str, data, phash: str, protocol: str = "standard") -> Path:
    """Where a suite writes the row of ``cell`` on ``split``: ``OUT/<run id>/result.json``."""
    from fer_bench.experiment.plan import run_id

    return out / run_id(cell.model, split_recipe(cell.recipe, split), data, phash, protocol) / "result.json"


def check_distinct(all_cells: list[Cell], data, hashes: dict[str, str], protocol: str = "standard") -> None:
    """Refuse two cells whose rows would share a run folder (lines that differ only in settings outside the protocol
    hash, such as eval.tta): the second would overwrite the first's files or be taken as finished."""
    seen: dict[Path, str] = {}
    for c in all_cells:
        for s in c.splits:
            path = result_file(Path("."), c, s, data, hashes[c.id], protocol)
            if path in seen and seen[path] != c.id:
                raise ConfigError(
                    f"suite cells {seen[path]} and {c.id} train the same protocol (their lines differ "
                    "only in settings that do not change the numbers); remove one of the lines."
                )
            seen[path] = c.id


def finished_on_disk(path: Path, phash: str) -> bool:
    """A result file that exists *and* names the expected protocol hash (never a smoke row in its place)."""

    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("protocol_hash") == phash
    except (OSError, ValueError):
        return False


def split_recipe(recipe: Recipe, split: str) -> Recipe:
    return replace(recipe, eval=replace(recipe.eval, split=split))


@dataclass
class SuiteRun:
    """What running a suite needs from the CLI: data, options, a tracker and how to tell a finished row."""

    suite: SuiteSpec
    cells: list[Cell]
    data: Any  # FerData
    opts: Any  # plan.RunOptions
    tracker: Any  # tracking.MlflowTracker or NullTracker
    finished: Callable[[Cell, str], bool]  # is (cell, split) done under the cell's own protocol hash?
    protocol_of: Callable[[Cell], str]  # the protocol hash a cell's rows will carry (computed before training)
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)
    plan_of: Callable[[Cell], Any] | None = None  # the cell's first split, resolved once (experiment.plan.RunPlan)

    def plan(self, cell: Cell):
        """The resolved run of ``cell``'s first split (the one it trains), or None to resolve it in the runner."""
        return self.plan_of(cell) if self.plan_of is not None else None


def pending(job: SuiteRun) -> list[Cell]:
    """The cells of ``job`` with a split not yet finished under their protocol (logged with the counts)."""
    todo = [c for c in job.cells if not all(job.finished(c, s) for s in c.splits)]
    job.log(f"suite {job.suite.name}: {len(job.cells)} cell(s) in this share, {len(job.cells) - len(todo)} finished "
            f"before, {len(todo)} to run")  # fmt: skip
    return todo


def run_suite(job: SuiteRun, unblind: bool = False) -> list[dict[str, Any]]:
    """Train and evaluate every unfinished cell; the rows written in this call.

    A blind suite (``blind: true``) only trains (:func:`train_blind`) unless ``unblind``: then the cells, trained,
    resume from their last checkpoints without training and are scored on the test splits.
    """
    from fer_bench.experiment.runner import evaluate_on_split, run_model
    from fer_bench.recipes import recipe_to_dict

    if job.suite.blind and not unblind:
        return train_blind(job)
    rows: list[dict[str, Any]] = []
    todo = pending(job)
    for n, cell in enumerate(todo, 1):
        job.log(f"== [{n}/{len(todo)}] {cell.id} · splits {', '.join(cell.splits)}")
        trained: dict[str, Any] | None = None
        # a cell cut short by a crash continues from its last.pt; each protocol has its own run folder
        resume = replace(job.opts, resume=True)
        for split in cell.splits:
            recipe = split_recipe(cell.recipe, split)
            if job.finished(cell, split):
                if trained is None and split == cell.splits[0]:  # its weights serve the other splits
                    trained = finished_row(job, cell, split) or run_model(cell.model, recipe, job.data, resume,
                                                                          plan=job.plan(cell))  # fmt: skip
                continue
            tags = {KIND_TAG: "model", SUITE_TAG: job.suite.name, CELL_TAG: cell.id}
            with job.tracker.run(f"{cell.id}-{split}", nested=True, tags=tags):
                if trained is None:  # the cell's training run
                    row = trained = run_model(cell.model, recipe, job.data, resume, on_epoch=job.tracker.log_epoch,
                                              plan=job.plan(cell))  # fmt: skip
                    for entry in row["history"] if job.suite.blind else ():  # trained blind: its curve, logged now
                        job.tracker.log_epoch(entry)
                else:  # the same weights on another split: a row of its own, no retraining
                    row = evaluate_on_split(cell.model, recipe, job.data, resume, trained)
                    for entry in row["history"]:
                        job.tracker.log_epoch(entry)
                row["suite"], row["cell"] = job.suite.name, cell.id
                if plan := corruption_plan(job.suite):  # the same weights under the corruption suite, beside the row
                    from fer_bench.experiment.rescoring import add_corruptions

                    add_corruptions(row, resume.out / trained["run_id"] / "best.pt", recipe, job.data, resume, plan)
                job.tracker.log_result(row, resume.out / row["run_id"], recipe_to_dict(recipe))
            rows.append(row)
    return rows


def finished_row(job: SuiteRun, cell: Cell, split: str) -> dict[str, Any] | None:
    """The finished row of ``cell`` on ``split`` as its result.json holds it, or None when this machine lacks it (a
    row another shard wrote to the shared tracking store: its weights are then rebuilt from last.pt)."""

    protocol = job.opts.protocol["name"] if job.opts.protocol else "standard"
    path = result_file(job.opts.out, cell, split, job.data, job.protocol_of(cell), protocol)
    return json.loads(path.read_text()) if finished_on_disk(path, job.protocol_of(cell)) else None


VALIDATION_FILE = "validation.json"  # a blind cell's row: training and validation only, beside its checkpoints


def validation_file(job: SuiteRun, cell: Cell) -> Path:
    """Where a blind suite keeps ``cell``'s validation row: in the run folder of its first split, beside ``last.pt``."""
    protocol = job.opts.protocol["name"] if job.opts.protocol else "standard"
    return result_file(job.opts.out, cell, cell.splits[0], job.data, job.protocol_of(cell), protocol).with_name(
        VALIDATION_FILE
    )


def train_blind(job: SuiteRun) -> list[dict[str, Any]]:
    """Train every cell without a validation row (resuming a killed one) and write that row; nothing is tested.

    The checkpoint is picked on the validation split as in any run; the row holds the training and validation
    figures only, and nothing goes to the tracking store (the learning curve is logged when the suite is unblinded).
    """
    from fer_bench.experiment.runner import run_model
    from fer_bench.utils.io import write_json

    todo = [c for c in job.cells if not finished_on_disk(validation_file(job, c), job.protocol_of(c))]
    job.log(f"suite {job.suite.name} (blind): {len(job.cells)} cell(s) in this share, {len(job.cells) - len(todo)} "
            f"with a validation row, {len(todo)} to train; no test split is scored")  # fmt: skip
    rows = []
    for n, cell in enumerate(todo, 1):
        job.log(f"== [{n}/{len(todo)}] {cell.id} · blind")
        opts = replace(job.opts, resume=True, evaluate_test=False)  # the run folder --unblind resumes from
        row = run_model(cell.model, split_recipe(cell.recipe, cell.splits[0]), job.data, opts, plan=job.plan(cell))
        row |= {"suite": job.suite.name, "cell": cell.id, "blind": True}
        write_json(validation_file(job, cell), row)
        rows.append(row)
    return rows


def without_validation_row(job: SuiteRun, all_cells: list[Cell]) -> list[str]:
    """The ids of the cells of ``all_cells`` (every shard's) that have no validation row under ``job.opts.out``."""
    return [c.id for c in all_cells if not finished_on_disk(validation_file(job, c), job.protocol_of(c))]


def check_unblind(job: SuiteRun, all_cells: list[Cell]) -> None:
    """Refuse to score a blind suite's test splits before every cell has its validation row."""
    if not job.suite.blind:
        raise ConfigError(f"--unblind: suite {job.suite.name!r} is not blind (blind: true); run it without --unblind.")
    if missing := without_validation_row(job, all_cells):
        shown = ", ".join(missing[:4]) + (" …" if len(missing) > 4 else "")
        raise ConfigError(f"--unblind: {len(missing)} of {len(all_cells)} cell(s) have no validation row under "
                          f"{job.opts.out} ({shown}); train them first (the same command without --unblind), every "
                          "shard's folders under one --out.")  # fmt: skip


def blind_summary(job: SuiteRun, all_cells: list[Cell]) -> str:
    """What a blind run prints instead of a table: how many cells have their validation row, and what is next."""
    missing = without_validation_row(job, all_cells)
    done = len(all_cells) - len(missing)
    then = ("every cell has its validation row: score the test splits once with --unblind" if not missing
            else "no test split is scored before all have one")  # fmt: skip
    return f"suite {job.suite.name} (blind): {done} of {len(all_cells)} cell(s) have their validation row; {then}."


def suite_title(suite: SuiteSpec) -> str:
    """The line above a suite's tables: its own ``leaderboard.title``, else a budgeted suite's budget.

    Example:
        >>> suite_title(SuiteSpec(name="x", budget_s=2700))
        '45 CPU-minutes per backbone'
    """
    if suite.leaderboard.title or suite.budget_s is None:
        return suite.leaderboard.title
    return f"{suite.budget_s / 60:g} CPU-minutes per backbone"


def render_leaderboard(job: SuiteRun, frame, out_dir: Path) -> list[Path]:
    """The suite's tables (its formats) and Pareto plot from a leaderboard frame; the files written."""
    from fer_bench.report import leaderboard as lb

    spec = job.suite.leaderboard
    agg = lb.aggregate(frame)
    written = []
    for fmt in spec.formats:
        path = out_dir / f"leaderboard.{'tex' if fmt == 'latex' else fmt}"
        text = lb.render(agg, fmt, per_class=spec.per_class, published=spec.published, title=suite_title(job.suite))
        path.write_text(text if text.endswith("\n") else text + "\n")
        written.append(path)
    if spec.plot:
        from fer_bench.report.figures import save_pareto

        save_pareto(agg, out_dir / "pareto.png")
        written.append(out_dir / "pareto.png")
    return written
