#!/usr/bin/env bash
# The test suite (CPU only; tests on the real FER2013 in ../shared/data skip cleanly when it is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1  # no hub here: without it a pretrained load retries for ~47 s
# Two worker processes, each test file whole on one of them (its module fixtures train once): much of a test's
# time is single-threaded (interpreter and CLI start-up, MLflow, SQLite, subprocesses), so two files at a time fill
# the two cores; tests/conftest.py gives each worker one compute thread. -n 0 runs everything in this process.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
