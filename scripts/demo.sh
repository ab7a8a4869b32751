#!/usr/bin/env bash
# The demo: train and rank two small models on the built-in synthetic faces (no download, ~3 min on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
exec .venv/bin/fer-bench run --models simple_cnn,resnet18 --dataset synthetic --epochs 3 --out runs/demo "$@"
