"""Training from Python: :func:`run` trains and scores models under one protocol and returns their rows."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_bench.experiment.checks import check_data_args, check_device
from fer_bench.utils.errors import ConfigError, FerBenchError

if TYPE_CHECKING:
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
    from fer_bench.engine.builders import check_targets
    from fer_bench.experiment.plan import RunOptions, resolve_plan
    from fer_bench.experiment.runner import phase, run_model
    from fer_bench.experiment.tracking import KIND_TAG, NullTracker
    from fer_bench.models import get_spec
    from fer_bench.recipes import recipe_to_dict
    from fer_bench.utils.provenance import git_sha

    world = world or distributed.SINGLE
    if seeds:
        distinct_seeds(seeds)
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
    proto = load_protocol_file(protocol)  # before the data: a file that is no protocol fails in seconds
    data = load_dataset(dataset, data_dir, cache_dir)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    opts = RunOptions(out=Path(out), device=device, weights=str(weights) if weights else None,
                      progress=progress, resume=resume, protocol=proto, allow_partial_weights=allow_partial_weights,
                      world=world)  # fmt: skip
    plans = []  # every run resolved (index sets, hashes, run folder) and its targets checked before anything is tracked
    for spec, rec in runs:
        check_targets(rec.loss, data)
        plans.append(resolve_plan(spec.name, rec, data, opts))
    tracker = tracker_of(tracker) if world.main else NullTracker()
    rows = []
    with tracker.run(f"run-{'+'.join(s.name for s in specs)}", tags={KIND_TAG: "suite"}) as parent:
        for n, ((spec, rec), plan) in enumerate(zip(runs, plans, strict=True), 1):
            if world.main:  # the data once: its source when it names the dataset ("synthetic(seed=0)"), else both
                said = data.source if data.source.startswith(data.name) else f"{data.name} ({data.source})"
                print(f"== model {n}/{len(runs)}: {spec.name} · recipe {rec.name} · seed {rec.train.seed} · "
                      f"{said}" + (f" · {world.size} processes" if world.active else ""), file=sys.stderr)  # fmt: skip
            # tagged as a model run from its start, so that a killed or running one is found as such too
            with tracker.run(f"{spec.name}-{rec.name}-s{rec.train.seed}", nested=True, tags={KIND_TAG: "model"}):
                row = run_model(spec.name, rec, data, opts, on_epoch=tracker.log_epoch, plan=plan)
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

    extra = [f"train.seed={seed}"] if seed is not None else []
    if pretrained:
        extra.append("input.pretrained=true")
    resolved = load_recipe(recipe or default_recipe(get_spec(model)), [*sets, *extra], origins or {})
    if reason := frozen_without_weights(resolved, has_weights=has_weights):
        raise ConfigError(f"--models {model}: {reason}")  # before the dataset loads
    return resolved


def tracker_of(tracker) -> Tracker:
    """The tracker, made now if the caller gave its maker; a tracker that logs nowhere if none."""
    from fer_bench.experiment.tracking import NullTracker

    if tracker is None:
        return NullTracker()
    return tracker if hasattr(tracker, "run") else tracker()


def load_protocol_file(path: str | Path | None) -> dict | None:
    if path is None:
        return None
    from fer_bench.data.audit import load_protocol

    return load_protocol(Path(path))


def distinct_seeds(seeds: Sequence[int]) -> None:
    if len(set(seeds)) != len(seeds):
        raise FerBenchError(f"--seeds {','.join(map(str, seeds))} repeats a seed; list each seed once.")
