#!/usr/bin/env bash
# The test suite (CPU only; tests on the real FER2013 in ../shared/data skip cleanly when it is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1  # no hub here: without it a pretrained load retries for ~47 s
exec .venv/bin/python -m pytest "$@"
