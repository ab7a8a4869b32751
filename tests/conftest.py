from __future__ import annotations

import os
from pathlib import Path

import pytest

# No hub access on these machines: without this a pretrained load retries for ~47 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# No usage telemetry from MLflow in tests (no network here; a blocked lookup can stall a process at exit).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# Under pytest-xdist (scripts/test.sh runs two workers on the two cores) each worker, and every process it starts,
# computes on one thread: two workers of two threads each would oversubscribe the cores. Set before torch loads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

REAL_FER2013 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes decoded-dataset caches to a temp dir, never to ~/.cache or next to the data."""
    monkeypatch.setenv("FER_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    # CLI runs track to MLflow by default: keep that store out of the working tree too.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path_factory.getbasetemp() / 'mlflow.db'}")


@pytest.fixture(scope="session")
def real_fer2013() -> Path:
    if not (REAL_FER2013 / "train").is_dir():
        pytest.skip(f"real FER2013 not present at {REAL_FER2013}")
    return REAL_FER2013


def pytest_addoption(parser):
    parser.addoption("--accept", action="store_true", help="rewrite golden files with the current output")


# The slow tier: modules and tests that train several models, start servers or launch many processes (each 30 s to
# several minutes on 2 cores, measured with --durations). `scripts/test.sh` leaves them out so that a newcomer has an
# answer in about ten minutes; `scripts/test.sh --all` (what CI runs) includes them. Mark a new slow test with
# @pytest.mark.slow, or list its module here when the whole module is slow.
SLOW_MODULES = {
    "test_distributed.py", "test_gpu_check.py", "test_hot_paths.py", "test_mlflow_ui.py", "test_packaging.py",
    "test_recipe_runs.py", "test_suite.py", "test_suite_compare.py", "test_suite_jobs.py", "test_tracking.py",
    "test_tracking_servers.py", "test_tune.py",
}  # fmt: skip
SLOW_TESTS = {
    "test_timing.py::test_bench_vs_timer_check_pairs_every_ratio",
    "test_timing.py::test_data_bench_every_ratio_comes_from_paired_windows",
    "test_cli.py::test_seeds_train_each_model_once_per_seed_and_a_pipe_gets_one_line_per_epoch",
    # resume: the fast tier keeps an in-process kill after the first epoch resuming to the same numbers
    "test_resume.py::test_killed_run_resumes_to_the_same_metrics",
    "test_resume.py::test_resume_with_another_recipe_starts_a_run_of_its_own",
    "test_resume.py::test_a_kill_at_an_early_stop_resumes_into_the_next_stage",
    "test_segments.py::test_a_run_killed_and_resumed_twice_has_three_segments",
    "test_compare_recipe.py::test_a_killed_run_with_the_ema_warmup_resumes_to_the_same_numbers",
    # the fast tier keeps eval's exact re-scoring and the cross-dataset cases
    "test_eval.py::test_eval_under_corruptions_writes_the_table_and_the_grid",
    "test_eval.py::test_a_suite_with_corruptions_scores_every_row_of_its_cells",
    "test_run_folders.py::test_a_rerun_of_the_same_protocol_says_it_replaces_its_row",
    "test_protocol.py::test_a_run_and_its_suite_check_compute_one_protocol",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        if name in SLOW_MODULES or f"{name}::{getattr(item, 'originalname', item.name)}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
