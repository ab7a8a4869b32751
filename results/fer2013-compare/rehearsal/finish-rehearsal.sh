#!/usr/bin/env bash
# finish.sh rehearsed on the synthetic set with three seeds: the blind cells with the run worktree's code (and the
# CPU sampler), then finish.sh itself, pointed at the rehearsal's folders. Run from main's root while the comparison's
# trainer is stopped; it writes under /work/rehearsal3 only.
set -u
MAIN=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
R=/work/rehearsal3
WT=/work/run-compare
if kill -0 "$(cat /work/compare-runs/cells.pid 2>/dev/null)" 2>/dev/null; then
    echo "the comparison's trainer is running: rehearse while it is stopped" >&2
    exit 2
fi
rm -rf "$R" && mkdir -p "$R/runs"
cp "$MAIN/results/fer2013-compare/rehearsal/suite-seeds.yaml" "$R/suite.yaml"
cd "$R" || exit 1
export HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
"$WT/.venv/bin/fer-bench" run --suite "$R/suite.yaml" --out "$R/runs" --tracking-uri "sqlite:///$R/m.db" \
    --no-progress > "$R/blind.log" 2>&1 &
pid=$!
"$MAIN/.venv/bin/python" "$MAIN/tools/cpu_share.py" --pid "$pid" --interval 5 --out "$R/runs/cells-cpu-share-r.txt" &
wait "$pid"
rc=$?
echo "blind rc=$rc"
[ "$rc" -eq 0 ] || exit "$rc"
sleep 6
cp "$R/blind.log" "$R/runs/cells.log" && touch "$R/runs/budget-watch.log"
# each finished cell sealed and kept, as keep_cell.sh does between the comparison's cells (without the commit)
RUNS="$R/runs" KEPT="$R/out/cells" DATA="$R" COMMIT=0 "$MAIN/results/fer2013-compare/keep_cell.sh" || exit 1
FIN_WT=$WT FIN_RUNS="$R/runs" FIN_SUITE="$R/suite.yaml" FIN_TRACKING="sqlite:///$R/m.db" FIN_RUN_CWD="$R" \
    FIN_OUT="$R/out" FIN_KEPT="$R/out/cells" FIN_COMMIT=0 FIN_DATA="$R" FIN_ROWS=18 FIN_MODELS=resnet18,efficientnetv2_s FIN_TIME_CHECK=0 \
    FIN_TITLE="rehearsal: 1 epoch on 128 synthetic images, 3 seeds" FIN_BENCH_ARGS="--repeats 3 --steps 3" \
    "$MAIN/results/fer2013-compare/finish.sh"
rc=$?
echo "finish rc=$rc"
[ "$rc" -eq 0 ] || exit "$rc"
# the rescue path of a lost machine: every kept cell scored from its sealed logits alone must give the rows the
# test look gave (the same figures, predictions files byte for byte)
"$WT/.venv/bin/python" "$MAIN/tools/seal_cell.py" "$R"/out/cells/*/ --data-dir "$R" --score "$R/rescued" || exit 1
"$MAIN/.venv/bin/python" - "$R/runs" "$R/rescued" <<'PY'
import json, sys
from pathlib import Path
runs, rescued = Path(sys.argv[1]), Path(sys.argv[2])
keys = ("test", "test_tta", "confusion_matrix", "predictions", "predictions_valid", "run_id", "split", "n_test")
rows = sorted(rescued.glob("*/result.json"))
bad = [p.parent.name for p in rows
       if any(json.loads(p.read_text()).get(k) != json.loads((runs / p.parent.name / "result.json").read_text()).get(k)
              for k in keys)]
print(f"rescued {len(rows)} row(s); {len(rows) - len(bad)} equal the test look's on {', '.join(keys)}; differ: {bad}")
sys.exit(1 if bad or len(rows) != len(list(runs.glob('*/result.json'))) else 0)
PY
# finish.sh again as after a lost machine: every cell scored from its seal alone (no weights, no --unblind)
FIN_WT=$WT FIN_RUNS="$R/lost" FIN_SUITE="$R/suite.yaml" FIN_RUN_CWD="$R" FIN_OUT="$R/out2" FIN_KEPT="$R/out/cells" \
    FIN_FROM_SEALS=1 FIN_SCORED="$R/scored2" FIN_DATA="$R" FIN_ROWS=18 FIN_MODELS=resnet18,efficientnetv2_s \
    FIN_TIME_CHECK=0 FIN_TITLE="rehearsal from the seals: 1 epoch on 128 synthetic images, 3 seeds" \
    FIN_BENCH_ARGS="--repeats 3 --steps 3" "$MAIN/results/fer2013-compare/finish.sh"
rc=$?
echo "finish from the seals rc=$rc"
exit "$rc"
