"""Pilot epoch timings of a suite, and the epochs each line trains under ``budget_s``.

Two suite fields serve a comparison planned before any figure exists. ``budget_s`` gives every cell the same
training time: each line trains for E = max(1, round(budget_s / t)) epochs, t its median epoch wall time (training
and validation) in the ``pilots`` file, which ``fer-bench run --suite S --pilot`` writes from a 2-epoch run of each
line (:func:`run_pilots`). The other, ``blind``, is described in :mod:`fer_bench.experiment.suite`.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fer_bench.utils.errors import ConfigError

if TYPE_CHECKING:
    from fer_bench.experiment.suite import SuiteRun, SuiteSpec


PILOT_EPOCHS = 2  # the epochs of a pilot run; the first one's wall includes warming up, hence the median


def budget_epochs(suite: SuiteSpec, lines: list[str], source: str = "suite") -> dict[str, int]:
    """The epochs of each of ``lines`` under ``budget_s``: max(1, round(budget_s / t)), t the line's
    ``median_epoch_s`` in the pilots file.

    Raises:
        ConfigError: no pilots file, or one that does not time every line of the suite.
    """
    fix = f"run `fer-bench run --suite {source} --pilot` to write it"
    try:
        times = read_pilots(Path(suite.pilots or ""))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc} ({fix}).") from None
    missing = [w for w in lines if w not in times]
    if missing:
        raise ConfigError(f"{source}: pilots file {suite.pilots!r} has no median_epoch_s > 0 for line(s) "
                          f"{', '.join(missing)}; {fix}.")  # fmt: skip
    return {w: max(1, round(suite.budget_s / times[w])) for w in lines}


def read_pilots(path: Path) -> dict[str, float]:
    """The ``median_epoch_s`` of each line in the pilots file ``path`` (the lines whose figure is a number > 0)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"pilots file {str(path)!r} cannot be read ({exc.__class__.__name__})") from None
    lines = data.get("lines") if isinstance(data, dict) else None
    if not isinstance(lines, dict):
        raise ConfigError(f"pilots file {str(path)!r} has no `lines:` mapping (line id -> median_epoch_s)")
    times = {k: v.get("median_epoch_s") for k, v in lines.items() if isinstance(v, dict)}
    return {k: float(t) for k, t in times.items() if isinstance(t, int | float) and not isinstance(t, bool) and t > 0}


def run_pilots(job: SuiteRun, path: Path) -> dict[str, Any]:
    """Train one cell per line for :data:`PILOT_EPOCHS` epochs (no test) and write the pilots file ``path``.

    ``job.cells`` are the pilot cells (one seed, the epochs set). The file (YAML) holds, per line id, the epochs'
    wall times (training and validation) and their median, with the CPU, the commit and when it was written.
    """
    from fer_bench.engine.builders import resolve_device
    from fer_bench.experiment.runner import run_model
    from fer_bench.utils.cpu_caps import probe
    from fer_bench.utils.provenance import device_name, git_sha

    lines = {}
    for n, cell in enumerate(job.cells, 1):
        job.log(f"== pilot [{n}/{len(job.cells)}] {cell.line}: {PILOT_EPOCHS} epochs, no test")
        opts = replace(job.opts, resume=False, evaluate_test=False, out=job.opts.out / "pilot" / cell.id)
        walls = [round(h["epoch_wall_s"], 2) for h in run_model(cell.model, cell.recipe, job.data, opts)["history"]]
        lines[cell.line] = {"epoch_wall_s": walls, "median_epoch_s": round(statistics.median(walls), 2)}
    machine = device_name(resolve_device(job.opts.device))  # the CPU's model and threads, or the GPU's name
    data = {"suite": job.suite.name, "commit": git_sha(), "machine": machine, "cpu_class": probe().processor_class,
            "epochs": PILOT_EPOCHS, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "lines": lines}  # fmt: skip
    budget = job.suite.budget_s
    header = (f"# Pilot epoch timings of suite {job.suite.name}: per line, the wall time (training + validation) of "
              f"each of {PILOT_EPOCHS} epochs and their median t.\n# A budgeted suite trains each line "
              f"max(1, round(budget_s / t)) epochs{f' (budget_s {budget:g})' if budget else ''}.\n")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(header + yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return data
