#!/usr/bin/env bash
# The test suite (CPU only; tests on the real FER2013 in ../shared/data skip cleanly when it is absent).
#   scripts/test.sh            the fast tier: everything but the tests marked slow (about 10 min on 2 cores)
#   scripts/test.sh --all      every test, the slow tier included (what CI runs)
# Other arguments go to pytest, e.g. scripts/test.sh -x -k recipes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1  # no hub here: without it a pretrained load retries for ~47 s
tier=(-m "not slow")
if [ "${1:-}" = "--all" ]; then tier=(); shift; fi
# Two worker processes, each test file whole on one of them (its module fixtures train once): much of a test's
# time is single-threaded (interpreter and CLI start-up, MLflow, SQLite, subprocesses), so two files at a time fill
# the two cores; tests/conftest.py gives each worker one compute thread. -n 0 runs everything in this process.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "${tier[@]}" "$@"
