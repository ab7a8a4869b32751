"""Several suite cells at once: ``fer-bench run --suite FILE --jobs N [--gpus 0,1,…]``.

Each cell runs in a ``fer-bench`` process of its own (the same command line plus ``--worker-cell ID``), so a cell
that crashes, runs out of memory or raises fails alone while the others finish. ``N`` job slots each run cells one
after another; slot ``k`` owns GPU ``gpus[k % len(gpus)]`` as its only visible device (``CUDA_VISIBLE_DEVICES``),
so with more slots than GPUs several small cells share one, and a GPU is never left idle while another holds two
slots. On CPU the slots split the cores: each job gets ``cores // slots`` torch threads (the row's ``device_name``
states the count). Every line a cell prints is prefixed with its id; jobs print one line per epoch, no progress bars.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fer_bench.utils.devices import cpu_cores
from fer_bench.utils.errors import ConfigError, FerBenchError

Log = Callable[[str], None]


class CellsFailed(FerBenchError):
    """Some cells of a parallel suite run failed (the others finished and were recorded)."""

    exit_code = 1  # not a usage mistake (2): the command ran, some of its work failed


@dataclass(frozen=True)
class Slot:
    """Where one job slot runs its cells: a GPU (its ``CUDA_VISIBLE_DEVICES`` entry) or none, and a thread count."""

    index: int
    gpu: str | None
    threads: int

    def env(self) -> dict[str, str]:
        """What a cell's process gets on top of this environment."""
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env

    def describe(self) -> str:
        where = f"GPU {self.gpu}" if self.gpu is not None else "CPU"
        return f"job {self.index + 1}: {where}, {self.threads} torch thread(s)"


@dataclass(frozen=True)
class Failure:
    """A cell whose process ended with an error: its exit status and the last line it printed (the reason)."""

    cell: str
    returncode: int
    reason: str

    def describe(self) -> str:
        return f"{self.cell} ({self.reason})"


def parse_jobs(text: str | None) -> int:
    """``--jobs N`` → N ≥ 1 (None → 1)."""
    if text is None:
        return 1
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--jobs {text!r}: expected the number of cells to run at once, 1 or more (e.g. --jobs 2).")
    return n


def plan_slots(jobs: int, cells: int, gpus: Sequence[str], cores: int) -> list[Slot]:
    """``min(jobs, cells)`` slots, GPUs round-robin (none on CPU), each with ``cores // slots`` threads (≥ 1)."""
    n = max(1, min(jobs, cells))
    threads = max(1, cores // n)
    return [Slot(k, gpus[k % len(gpus)] if gpus else None, threads) for k in range(n)]


def run_cells(
    cells: Sequence[str], command: Callable[[str], list[str]], slots: Sequence[Slot], log: Log
) -> list[Failure]:
    """Run each cell's ``command(cell)`` in its own process, ``len(slots)`` at a time; the cells that failed.

    Output lines come through ``log`` prefixed ``[cell]``, whole lines only, so parallel jobs never interleave
    within a line. On Ctrl-C the running cells are stopped (their runs end KILLED) and the interrupt is re-raised.
    """
    todo: queue.Queue[str] = queue.Queue()
    for cell in cells:
        todo.put(cell)
    state = _PoolState(log)
    workers = [threading.Thread(target=_slot_loop, args=(slot, todo, command, state), daemon=True) for slot in slots]
    for w in workers:
        w.start()
    try:
        for w in workers:
            while w.is_alive():
                w.join(timeout=0.5)  # NOTE: a bounded wait keeps the main thread responsive to Ctrl-C
    except KeyboardInterrupt:
        state.stop()
        for w in workers:
            w.join()
        raise
    return sorted(state.failures, key=lambda f: list(cells).index(f.cell))


class _PoolState:
    """What the slot threads share: the log (one line at a time), the running processes and the failures."""

    def __init__(self, log: Log) -> None:
        self.lock = threading.Lock()
        self._log = log
        self.procs: set[subprocess.Popen] = set()
        self.failures: list[Failure] = []
        self.stopping = False

    def log(self, line: str) -> None:
        with self.lock:
            self._log(line)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for proc in self.procs:
                proc.terminate()  # SIGTERM: the cell's tracker ends its run KILLED


def _slot_loop(slot: Slot, todo: queue.Queue[str], command: Callable[[str], list[str]], state: _PoolState) -> None:
    while not state.stopping:
        try:
            cell = todo.get_nowait()
        except queue.Empty:
            return
        failure = _run_one(cell, command(cell), slot, state)
        if failure is not None and not state.stopping:
            state.log(f"[{cell}] FAILED: {failure.reason}")
            with state.lock:
                state.failures.append(failure)


def _run_one(cell: str, cmd: list[str], slot: Slot, state: _PoolState) -> Failure | None:
    """One cell in its own process; its lines go to the log as they come; a Failure unless it exited 0."""
    with state.lock:
        if state.stopping:
            return None
        # NOTE: stderr into stdout, unbuffered: one pipe keeps the cell's own line order, its last line is the error
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, errors="replace",
                                env=os.environ | slot.env() | {"PYTHONUNBUFFERED": "1"})  # fmt: skip
        state.procs.add(proc)
    state.log(f"[{cell}] started ({slot.describe()})")
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:  # text mode: a carriage return (a progress redraw) also ends a line
        line = line.rstrip()
        if line:
            last = line.strip()
            state.log(f"[{cell}] {line}")
    rc = proc.wait()
    with state.lock:
        state.procs.discard(proc)
    if rc == 0:
        state.log(f"[{cell}] done")
        return None
    reason = last.removeprefix("fer-bench: error: ") or "no output"  # the CLI's one-line error, or a traceback's
    if rc < 0:  # killed by a signal (e.g. the kernel's OOM killer): the last line is not an error message
        reason = f"killed by signal {-rc}; last line: {reason}"
    return Failure(cell, rc, reason)


def worker_command(argv: Sequence[str], cell: str, parent_run: str | None) -> list[str]:
    """The ``fer-bench`` command that runs one cell of the suite that ``argv`` runs, nested under ``parent_run``."""
    cmd = [sys.executable, "-m", "fer_bench", *argv, "--worker-cell", cell, "--no-progress"]
    return cmd + (["--parent-run", parent_run] if parent_run else [])


def run_parallel(job: Any, argv: Sequence[str], jobs: int, gpus: Sequence[str], parent_run: str | None) -> None:
    """Run the unfinished cells of ``job`` (a suite.SuiteRun) ``jobs`` at a time; raise CellsFailed if any failed."""
    from fer_bench.experiment import suite as st

    todo = st.pending(job)
    if not todo:
        return
    slots = plan_slots(jobs, len(todo), gpus, cpu_cores())
    job.log(f"{len(todo)} cell(s) in {len(slots)} parallel job(s): " + "; ".join(s.describe() for s in slots))
    failures = run_cells([c.id for c in todo], lambda cell: worker_command(argv, cell, parent_run), slots, job.log)
    if failures:
        raise CellsFailed(
            f"{len(failures)} of {len(todo)} cell(s) failed: {'; '.join(f.describe() for f in failures)}. "
            "Their output is above, prefixed with the cell id; the other cells' rows are recorded. Run the same "
            "command again to retry the failed cells (finished ones are skipped)."
        )
