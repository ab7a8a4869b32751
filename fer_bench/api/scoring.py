"""Scoring a checkpoint from Python: :func:`evaluate` (what `fer-bench eval` does)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_bench.experiment.checks import check_data_args, check_device

if TYPE_CHECKING:
    from fer_bench.experiment.tracking import Tracker

from fer_bench.api.runs import load_protocol_file, tracker_of
from fer_bench.utils.errors import FerBenchError


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
    from fer_bench.experiment.plan import RunOptions
    from fer_bench.experiment.tracking import KIND_TAG
    from fer_bench.recipes import recipe_to_dict

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
    proto = load_protocol_file(protocol)
    data = _eval_data(ck, dataset, data_dir, cache_dir, split)
    opts = RunOptions(out=Path(out), device=device, progress=False, protocol=proto)
    prepared = ev.prepare(ck, data, split or (ck.run["split"] if ck.run else "test"), opts)  # nothing written before
    tracker = tracker_of(tracker)
    with tracker.run(prepared.eval_id, tags={KIND_TAG: "eval"}):
        row = ev.evaluate(prepared, opts, plan)
        tracker.log_result(row, Path(out) / row["run_id"], recipe_to_dict(ck.recipe))
    return row


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
