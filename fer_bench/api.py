"""The Python API: train and score backbones, rank their rows. The `fer-bench` commands call these functions.

Example:
    >>> import tempfile, fer_bench
    >>> out = tempfile.mkdtemp()
    >>> rows = fer_bench.run(["simple_cnn"], sets=["train.epochs=1", "data.limit_train=64"], out=out, progress=False)
    >>> rows[0]["model"], rows[0]["dataset"], 0 <= rows[0]["test"]["macro_f1"] <= 100
    ('simple_cnn', 'synthetic', True)
    >>> row = fer_bench.evaluate(f"{out}/{rows[0]['run_id']}", split="public", out=tempfile.mkdtemp())
    >>> row["split"], row["n_test"] > 0
    ('public', True)
    >>> board = fer_bench.leaderboard([out])
    >>> list(board.frame["model"])
    ['simple_cnn']

Every function checks its arguments before anything loads and raises :class:`fer_bench.utils.errors.FerBenchError`
(one line: what, where, the fix) for a mistake of the caller's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_bench.experiment.checks import check_data_args, check_device

if TYPE_CHECKING:
    import pandas as pd

    from fer_bench.experiment.tracking import Tracker


def run(
    models: Sequence[str],
    *,
    recipe: str | None = None,
    sets: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    dataset: str = "synthetic",
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    out: str | Path = "runs",
    device: str = "auto",
    weights: str | Path | None = None,
    pretrained: bool = False,
    allow_partial_weights: bool = False,
    protocol: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    tracker: Tracker | Callable[[], Tracker] | None = None,
    origins: dict[str, str] | None = None,
    world: Any = None,
) -> list[dict[str, Any]]:
    """Train and evaluate each model once per seed under one protocol; the result rows, as ``result.json`` holds them.

    Args:
        models: registry names or ``timm:<arch>``.
        recipe: a recipe name or YAML path (default: each model's own).
        sets: recipe overrides ``"path=value"`` (``"train.epochs=3"``), applied after the recipe file.
        seeds: one run per seed (default: the recipe's seed).
        dataset, data_dir, cache_dir: the registered dataset (``name[:key=value,…]``), its files, the decode cache.
        out: the folder that gets one run folder per row.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        weights, pretrained, allow_partial_weights: the starting weights (a local state dict, or timm's).
        protocol: a leakage-free protocol file from ``fer-bench data check --write-protocol``.
        resume: continue each run from its ``last.pt`` under ``out``.
        tracker: where rows are logged, or a function that makes it once the checks pass (default: nowhere; the
            CLI passes its MLflow tracker's maker, so that bad input creates no store).
        origins: recipe path → how the caller spelt it, for error messages (the CLI's flags).
        world: the data-parallel group under torchrun (default: one process).
    """
    from fer_bench.data import load_dataset
    from fer_bench.engine import distributed
    from fer_bench.experiment.runner import RunOptions, phase, run_model
    from fer_bench.experiment.tracking import KIND_TAG, NullTracker
    from fer_bench.models import get_spec
    from fer_bench.recipes import recipe_to_dict
    from fer_bench.utils.provenance import git_sha

    world = world or distributed.SINGLE
    specs = [get_spec(m) for m in models]  # a bad name fails before anything loads
    if weights:
        from fer_bench.models.weights import check_weights_file

        check_weights_file(Path(weights))
    git_sha()  # NOTE: read once, up front: the row names the code that started the run
    has_weights = pretrained or weights is not None
    runs = [(spec, recipe_for(spec.name, recipe, sets, origins, seed, pretrained, has_weights))
            for spec in specs for seed in (seeds or [None])]  # fmt: skip
    for split in dict.fromkeys(rec.eval.split for _, rec in runs):
        check_data_args(dataset, data_dir, split)
    check_device(device)
    proto = _load_protocol(protocol)  # before the data: a file that is no protocol fails in seconds
    data = load_dataset(dataset, data_dir, cache_dir)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    opts = RunOptions(out=Path(out), device=device, weights=str(weights) if weights else None,
                      progress=progress, resume=resume, protocol=proto, allow_partial_weights=allow_partial_weights,
                      world=world)  # fmt: skip
    tracker = _tracker(tracker) if world.main else NullTracker()
    rows = []
    with tracker.run(f"run-{'+'.join(s.name for s in specs)}", tags={KIND_TAG: "suite"}) as parent:
        for n, (spec, rec) in enumerate(runs, 1):
            if world.main:  # the data once: its source when it names the dataset ("synthetic(seed=0)"), else both
                said = data.source if data.source.startswith(data.name) else f"{data.name} ({data.source})"
                print(f"== model {n}/{len(runs)}: {spec.name} · recipe {rec.name} · seed {rec.train.seed} · "
                      f"{said}" + (f" · {world.size} processes" if world.active else ""), file=sys.stderr)  # fmt: skip
            # tagged as a model run from its start, so that a killed or running one is found as such too
            with tracker.run(f"{spec.name}-{rec.name}-s{rec.train.seed}", nested=True, tags={KIND_TAG: "model"}):
                row = run_model(spec.name, rec, data, opts, on_epoch=tracker.log_epoch)
                if tracker.enabled:
                    phase("logging the row, its files and plots to MLflow")
                tracker.log_result(row, Path(out) / row["run_id"], recipe_to_dict(rec))
            rows.append(row)
        if world.main:  # the table of every row in ``out``: this call's and earlier runs' of other settings
            table = Path(out) / "leaderboard.md"
            table.write_text(folder_table(Path(out)) + "\n")
            from fer_bench.report.leaderboard import frame_from_rows

            tracker.log_summary(parent, frame_from_rows(rows), [table])
    return rows


def folder_table(out: Path) -> str:
    """The Markdown table of every run folder directly in ``out``."""
    from fer_bench.report import leaderboard as lb

    return lb.render(lb.aggregate(lb.frame_from_rows(lb.read_rows(sorted(out.glob("*/result.json"))))), "md")


def recipe_for(model: str, recipe: str | None, sets: Sequence[str], origins: dict[str, str] | None = None,
               seed: int | None = None, pretrained: bool = False, has_weights: bool = False):  # fmt: skip
    """The resolved recipe of one run: ``recipe`` (default: the model's own) with ``sets``, the seed and the weights
    flags applied; a recipe that freezes the backbone without starting weights is refused here."""
    from fer_bench.models import get_spec
    from fer_bench.recipes import default_recipe, load_recipe
    from fer_bench.recipes.checks import frozen_without_weights
    from fer_bench.utils.errors import ConfigError

    extra = [f"train.seed={seed}"] if seed is not None else []
    if pretrained:
        extra.append("input.pretrained=true")
    resolved = load_recipe(recipe or default_recipe(get_spec(model)), [*sets, *extra], origins or {})
    if reason := frozen_without_weights(resolved, has_weights=has_weights):
        raise ConfigError(f"--models {model}: {reason}")  # before the dataset loads
    return resolved


def evaluate(
    run: str | Path | None = None,
    *,
    weights: str | Path | None = None,
    model: str | None = None,
    recipe: str | None = None,
    trained_on: str | None = None,
    img_size: int | None = None,
    sets: Sequence[str] = (),
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    split: str | None = None,
    device: str = "auto",
    protocol: str | Path | None = None,
    corruptions: str | None = None,
    severities: str = "1,2,3,4,5",
    corruption_seed: int = 0,
    out: str | Path = "runs/eval",
    tracker: Tracker | Callable[[], Tracker] | None = None,
) -> dict[str, Any]:
    """Score a checkpoint (a run folder, or a weights file with its ``model``) on a dataset split; the eval row.

    With ``corruptions`` (``all`` or ``name,…``) the row also holds the corruption suite's table and mCA.
    """
    from fer_bench.experiment import rescoring as ev
    from fer_bench.experiment.runner import RunOptions
    from fer_bench.experiment.tracking import KIND_TAG
    from fer_bench.recipes import recipe_to_dict
    from fer_bench.utils.errors import FerBenchError

    if (run is None) == (weights is None):
        raise FerBenchError("give a run folder (--run DIR) or a weights file (--weights FILE --model NAME): one of "
                            "them.")  # fmt: skip
    if weights is not None and not model:
        raise FerBenchError("--weights needs --model NAME (the architecture the weights are for).")
    if run is not None and (model or recipe or img_size or trained_on):
        raise FerBenchError("--run DIR takes the model, recipe, input size and classes from the run; drop "
                            "--model/--recipe/--img-size/--trained-on (or score best.pt with --weights FILE "
                            "--model NAME).")  # fmt: skip
    check_data_args(dataset, data_dir, split)
    check_device(device)
    plan = _corruption_plan(corruptions, severities, corruption_seed)
    if run is not None:
        if not Path(run).is_dir():
            raise FerBenchError(f"--run {run}: no such folder. Give a run folder that `fer-bench run` wrote.")
        ck = ev.from_run(Path(run), list(sets))
    else:
        ck = ev.from_weights(Path(weights), model, recipe, list(sets), img_size, trained_on)
    proto = _load_protocol(protocol)
    data = _eval_data(ck, dataset, data_dir, cache_dir, split)
    opts = RunOptions(out=Path(out), device=device, progress=False, protocol=proto)
    prepared = ev.prepare(ck, data, split or (ck.run["split"] if ck.run else "test"), opts)  # nothing written before
    tracker = _tracker(tracker)
    with tracker.run(ev.eval_id(prepared), tags={KIND_TAG: "eval"}):
        row = ev.evaluate(prepared, opts, plan)
        tracker.log_result(row, Path(out) / row["run_id"], recipe_to_dict(ck.recipe))
    return row


@dataclass(frozen=True)
class Leaderboard:
    """A ranked table: ``rows`` (one per run), ``frame`` (one per line: mean, sd and intervals over seeds), ``text``
    (rendered in the format asked for)."""

    rows: pd.DataFrame
    frame: pd.DataFrame
    text: str

    def __str__(self) -> str:
        return self.text


def leaderboard(
    results: Sequence[str | Path] | None = None,
    *,
    tracking_uri: str | None = None,
    experiment: str = "fer-bench",
    filter: str = "",  # noqa: A002  (MLflow's word for it)
    corruption_runs: Sequence[str | Path] = (),
    fmt: str = "md",
    columns: Sequence[str] = (),
    per_class: bool = False,
    published: bool = False,
    title: str = "",
) -> Leaderboard:
    """Rank the rows of ``results`` (run folders, their parents, or result.json files), or else of an MLflow store.

    Args:
        results: where ``fer-bench run --out`` wrote (default: read the tracking store instead).
        tracking_uri, experiment, filter: the MLflow store, experiment and extra search filter.
        corruption_runs: ``fer-bench eval --corruptions`` folders whose mCA fills the table's mCA columns.
        fmt: ``md``, ``csv``, ``latex`` or ``html``; columns, per_class, published, title: as `fer-bench leaderboard`.
    """
    from fer_bench.report import leaderboard as lb
    from fer_bench.utils.errors import FerBenchError

    lb.layout.groups(list(columns))
    for flag, paths in (("--from-results", results or ()), ("--corruption-runs", corruption_runs)):
        if missing := [str(p) for p in paths if not Path(p).exists()]:
            raise FerBenchError(f"{flag}: {', '.join(missing)} does not exist. Give the --out folder of a "
                                f"`fer-bench {'run' if flag == '--from-results' else 'eval --corruptions'}` (or its "
                                "run folders).")  # fmt: skip
    if results:
        frame = lb.frame_from_rows(lb.read_rows([Path(p) for p in results]))
    else:
        from fer_bench.experiment.tracking import search_bench_runs, search_model_runs

        frame = lb.frame_from_mlflow(search_model_runs(tracking_uri, experiment, filter))
        frame = lb.apply_bench(frame, search_bench_runs(tracking_uri, experiment))
    if corruption_runs and not frame.empty:
        frame = lb.apply_corruptions(frame, lb.frame_from_rows(lb.read_rows([Path(p) for p in corruption_runs])))
    if frame.empty:
        where = ", ".join(map(str, results)) if results else f"experiment {experiment!r}"
        raise FerBenchError(f"no finished model runs in {where}{' matching ' + repr(filter) if filter else ''}. "
                            "Run `fer-bench run` first.")  # fmt: skip
    agg = lb.aggregate(frame)
    text = lb.render(agg, fmt, columns=list(columns), per_class=per_class, published=published, title=title)
    return Leaderboard(frame, agg, text)


def _tracker(tracker) -> Tracker:
    """The tracker, made now if the caller gave its maker; a tracker that logs nowhere if none."""
    from fer_bench.experiment.tracking import NullTracker

    if tracker is None:
        return NullTracker()
    return tracker if hasattr(tracker, "run") else tracker()


def _load_protocol(path: str | Path | None) -> dict | None:
    if path is None:
        return None
    from fer_bench.data.audit import load_protocol

    return load_protocol(Path(path))


def _corruption_plan(corruptions: str | None, severities: str, seed: int):
    from fer_bench.data.corruptions import parse_corruptions, parse_severities
    from fer_bench.experiment.rescoring import CorruptionPlan

    levels = parse_severities(severities)  # checked even when no corruption uses them
    return CorruptionPlan(parse_corruptions(corruptions), levels, seed) if corruptions else None


def _eval_data(ck, dataset: str | None, data_dir, cache_dir, split: str | None):
    """The dataset to score on: ``dataset``/``data_dir``, else the run's own (its source path, when it still exists)."""
    from fer_bench.data import load_dataset

    name = dataset or (ck.run["dataset"] if ck.run else "synthetic")
    if data_dir is None and ck.run and name == ck.run["dataset"] and Path(str(ck.run.get("data_source"))).exists():
        data_dir = ck.run["data_source"]
    check_data_args(name, data_dir, split)  # a run's own dataset, before it loads
    data = load_dataset(name, data_dir, cache_dir)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    return data
