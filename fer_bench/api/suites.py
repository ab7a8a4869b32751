"""Suites from Python: :func:`run_suite` (what `fer-bench run --suite` does)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fer_bench.experiment.checks import check_data_args, check_device

if TYPE_CHECKING:
    import pandas as pd

    from fer_bench.experiment.tracking import Tracker

from fer_bench.api.runs import distinct_seeds, load_protocol_file
from fer_bench.utils.errors import FerBenchError


@dataclass(frozen=True)
class SuiteResult:
    """What a suite run leaves: every shard's rows of the suite's protocols (``frame``; None while a blind suite trains
    and for pilots), the Markdown table, the files written, the one line said instead of a table, and the cells that
    failed (their processes under --jobs; the finished cells' rows still make the table)."""

    frame: pd.DataFrame | None
    table: str
    written: list[Path]
    said: str
    runs_url: str | None
    failed: Exception | None = None


def run_suite(
    suite: str | Path,
    *,
    sets: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    protocol: str | Path | None = None,
    shard: str | None = None,
    jobs: str | int | None = None,
    gpus: str | None = None,
    pilot: bool = False,
    unblind: bool = False,
    progress: bool = True,
    tracker: Callable[[str], Tracker] | None = None,
    experiment: str | None = None,
    worker_cell: str | None = None,
    parent_run: str | None = None,
    argv: Sequence[str] = (),
) -> SuiteResult:
    """Train and score every unfinished cell of a suite file (models × recipes × seeds × splits), then its table.

    Args:
        suite: the suite YAML (e.g. ``benchmarks/fer2013-cpu.yaml``).
        sets: recipe overrides for every cell; seeds: these seeds instead of the suite's.
        dataset, data_dir, cache_dir: instead of the suite's dataset.
        out: where the run folders go (default: ``runs/<suite name>``).
        shard: ``K/N`` or ``auto`` (a SLURM array task's share); jobs, gpus: cells at once, in processes of their
            own (``argv``: the `fer-bench run` arguments each worker is started with).
        pilot: train each line 2 epochs and write the suite's pilots file; unblind: score a blind suite's tests.
        tracker: experiment name → the tracker (default: the result files only); experiment: the MLflow experiment
            (default: the suite's).
    """
    from fer_bench.data import load_dataset
    from fer_bench.experiment import suite as st
    from fer_bench.experiment.jobs import CellsFailed, parse_jobs, run_parallel
    from fer_bench.experiment.pilots import PILOT_EPOCHS, run_pilots
    from fer_bench.experiment.plan import RunOptions, resolve_plan
    from fer_bench.experiment.shards import parse_shard
    from fer_bench.experiment.shards import shard as share_of
    from fer_bench.experiment.tracking import KIND_TAG, SUITE_TAG, NullTracker
    from fer_bench.utils.devices import job_gpus
    from fer_bench.utils.provenance import git_sha

    spec = st.load_suite(Path(suite), pilot=pilot)
    if seeds:
        distinct_seeds(seeds)
        spec = dataclasses.replace(spec, seeds=tuple(seeds))
    k, n = parse_shard(shard)
    n_jobs = parse_jobs(None if jobs is None else str(jobs))
    parallel = not worker_cell and (n_jobs > 1 or gpus is not None)
    gpu_ids = job_gpus(gpus, device) if parallel else []  # checked before any data loads
    sets = list(sets)
    if pilot:  # one seed per line, PILOT_EPOCHS epochs, without the budget the pilots file is for
        if not spec.pilots:
            raise FerBenchError(f"--pilot: suite {suite} names no pilots file; add pilots: FILE (beside budget_s).")
        if shard or n_jobs > 1 or unblind:
            raise FerBenchError("--pilot times each line in turn on this machine: without --shard, --jobs or "
                                "--unblind.")  # fmt: skip
        spec = dataclasses.replace(spec, seeds=spec.seeds[:1])
        sets.append(f"train.epochs={PILOT_EPOCHS}")
    all_cells = st.cells(spec, sets, str(suite), budget=not pilot)
    cells = share_of(all_cells, k, n)
    if worker_cell:  # one cell of a --jobs run, in its own process
        all_cells = cells = [c for c in cells if c.id == worker_cell]
    check_data_args(dataset, data_dir)
    if not parallel:  # a parallel run's cells check their own GPUs (job_gpus above)
        check_device(device)
    git_sha()
    proto = load_protocol_file(protocol)  # before the data: a file that is no protocol fails in seconds
    data = load_dataset(dataset or spec.dataset, data_dir or spec.data_dir, cache_dir)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    out = Path(out) if out is not None else Path("runs") / spec.name
    opts = RunOptions(out=out, device=device, progress=progress, protocol=proto)
    proto_name = proto["name"] if proto else "standard"
    # each cell resolved once: its protocol hash tells finished rows and distinct folders, and its first split trains
    plans = {c.id: resolve_plan(c.model, st.split_recipe(c.recipe, c.splits[0]), data, opts) for c in all_cells}
    hashes = {cid: p.protocol_hash for cid, p in plans.items()}
    st.check_distinct(all_cells, data, hashes, proto_name)
    experiment = experiment or spec.experiment or spec.name
    track = tracker(experiment) if tracker is not None else NullTracker()
    if track.enabled:
        from fer_bench.experiment.tracking import finished_suite_rows

        done = finished_suite_rows(track.uri, experiment, spec.name)
        finished = lambda cell, split: (cell.id, split, hashes[cell.id]) in done  # noqa: E731
    else:
        finished = lambda cell, split: st.finished_on_disk(  # noqa: E731
            st.result_file(out, cell, split, data, hashes[cell.id], proto_name), hashes[cell.id])  # fmt: skip
    job = st.SuiteRun(spec, cells, data, opts, track, finished, lambda cell: hashes[cell.id],
                      plan_of=None if pilot else (lambda cell: plans[cell.id]))  # fmt: skip
    if pilot:
        run_pilots(job, Path(spec.pilots))
        return SuiteResult(None, "", [Path(spec.pilots)], f"pilots: {spec.pilots}", None)
    if unblind:
        st.check_unblind(job, all_cells)
    if worker_cell:  # its rows only, nested under the suite's run; the parent process writes the table
        track.parent_run_id = parent_run
        st.run_suite(job, unblind=unblind)
        return SuiteResult(None, "", [], "", None)
    failed = None
    tags = {KIND_TAG: "suite", SUITE_TAG: spec.name, "fer_bench.shard": f"{k}/{n}"}
    try:
        with track.run(f"suite-{spec.name}-{k}of{n}", tags=tags) as parent:
            if parallel:
                run_parallel(job, list(argv), n_jobs, gpu_ids, parent)
            else:
                st.run_suite(job, unblind=unblind)
    except CellsFailed as exc:  # the suite's run ends FAILED; the finished cells' rows still make the table
        failed = exc
    if spec.blind and not unblind:  # no table: not one test figure before --unblind
        return SuiteResult(None, "", [], st.blind_summary(job, all_cells), None, failed)
    frame = _suite_frame(spec, all_cells, data, out, hashes, proto_name, track, experiment)
    out.mkdir(parents=True, exist_ok=True)
    written = st.render_leaderboard(job, frame, out)
    track.log_summary(parent, frame, written)
    from fer_bench.report import leaderboard as lb

    table = lb.render(lb.aggregate(frame), "md", per_class=False, published=spec.leaderboard.published)
    return SuiteResult(frame, table, written, "", track.runs_url(), failed)


def _suite_frame(spec, all_cells, data, out: Path, hashes: dict[str, str], proto_name: str, track, experiment: str):
    """Every shard's rows of the suite's protocols: from the tracking store, or from the result files here (a smoke
    run of a cell, under another protocol, is not part of the table)."""
    from fer_bench.experiment import suite as st
    from fer_bench.report import leaderboard as lb

    if track.enabled:
        from fer_bench.experiment.tracking import SUITE_TAG, search_bench_runs, search_model_runs

        found = search_model_runs(track.uri, experiment, f"tags.`{SUITE_TAG}` = '{spec.name}'")
        frame = lb.apply_bench(lb.frame_from_mlflow(found), search_bench_runs(track.uri, experiment))
    else:
        files = [st.result_file(out, c, s, data, hashes[c.id], proto_name) for c in all_cells for s in c.splits]
        frame = lb.frame_from_rows(lb.read_rows([f for f in files if f.is_file()]))
    return frame[frame["protocol_hash"].isin(set(hashes.values()))] if not frame.empty else frame
