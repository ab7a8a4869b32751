#!/usr/bin/env bash
# Start or resume the comparison's cells in the background (PLAN.md, "Budget"): the blind suite from the run's
# worktree, the trainer's CPU-share sampler and the time-rule watcher. Run from main's root, nothing else training:
#     results/fer2013-compare/cells.sh          # again after a stop: cells continue from their last.pt
# Logs: RUNS/cells.log (the suite), RUNS/cells-cpu-share-<utc>.txt (one file per start), RUNS/budget-watch.log.
set -euo pipefail
MAIN=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WT=${WT:-/work/run-compare}                       # the worktree pinned at the run's commit
RUNS=${RUNS:-/work/compare-runs}                  # the suite's --out
PILOTS=results/fer2013-compare/pilots-amended.yaml

if pgrep -f "fer-bench run --suite" > /dev/null; then
    echo "cells.sh: a suite is already running (pid $(pgrep -f 'fer-bench run --suite' | tr '\n' ' ')); let it run" >&2
    exit 2
fi
if [ -n "$(git -C "$WT" status --porcelain -uno)" ]; then
    echo "cells.sh: $WT has uncommitted changes (rows would record a -dirty commit); commit them on its branch" >&2
    exit 2
fi
mkdir -p "$RUNS"
# After a lost machine the kept cells (keep_cell.sh) go back into the runs folder, validation row and seal without
# weights, so that the suite does not train them again; their test look is then the one from the seals (finish.sh
# with FIN_FROM_SEALS=1, which its --verify step asks for).
for k in "$MAIN"/results/fer2013-compare/cells/*/; do
    [ -f "$k/sealed.json" ] && [ ! -e "$RUNS/$(basename "$k")" ] || continue
    mkdir -p "$RUNS/$(basename "$k")" && cp -p "$k"* "$RUNS/$(basename "$k")/"
    echo "cells.sh: the kept cell $(basename "$k") restored into $RUNS (no weights)"
done
# the plan's conditions: the kernel's autogroup off, so that niced work cannot take a fair half of the cores
[ -w /proc/sys/kernel/sched_autogroup_enabled ] && echo 0 > /proc/sys/kernel/sched_autogroup_enabled
export HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
cd "$WT"
echo "== $(date -u +%FT%TZ) cells.sh: start at $(git rev-parse --short HEAD) on $(hostname)" >> "$RUNS/cells.log"
setsid nohup .venv/bin/fer-bench run --suite benchmarks/fer2013-compare.yaml --out "$RUNS" --no-progress \
    >> "$RUNS/cells.log" 2>&1 < /dev/null &
pid=$!
echo "$pid" > "$RUNS/cells.pid"
nohup "$MAIN/.venv/bin/python" "$MAIN/tools/cpu_share.py" --pid "$pid" \
    --out "$RUNS/cells-cpu-share-$(date -u +%Y%m%dT%H%M%SZ).txt" > /dev/null 2>&1 < /dev/null &
pkill -f "budget_watch.py $RUNS " || true
nohup "$MAIN/.venv/bin/python" "$MAIN/tools/budget_watch.py" "$RUNS" "$WT/$PILOTS" --cpu-class avx2 \
    --pid-file "$RUNS/cells.pid" --every 30 >> "$RUNS/budget-watch.log" 2>&1 < /dev/null &
echo "cells.sh: suite pid $pid from $WT ($(git rev-parse --short HEAD)); log $RUNS/cells.log"
