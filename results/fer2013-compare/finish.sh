#!/usr/bin/env bash
# The comparison's last steps (README, "After the last cell"), in order, stopping at the first failure; each step's
# command and exit code go to finish.log. Run it once every cell has its validation row, nothing else on the cores:
#     results/fer2013-compare/finish.sh
# Running it again is safe: the test look skips the (cell, split) rows already scored, the later steps rewrite their
# files. The FIN_* variables point it elsewhere; only the rehearsal on the synthetic set sets them.
set -uo pipefail

MAIN=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)          # this script's checkout: its code makes the tables
WT=${FIN_WT:-/work/run-compare}                                   # the run's worktree: its code scores the test splits
RUN_CODE=${FIN_RUN_CODE:-f18e428}                                 # the code the cells trained with (their git_sha's)
RUNS=${FIN_RUNS:-/work/compare-runs}                              # the cells' folders (the suite's --out)
SUITE=${FIN_SUITE:-benchmarks/fer2013-compare.yaml}               # relative to WT, or absolute
PILOTS=${FIN_PILOTS:-results/fer2013-compare/pilots-amended.yaml} # relative to WT, or absolute
TRACKING=${FIN_TRACKING:-sqlite:///$WT/mlflow.db}                 # the store the cells' rows go to (and are skipped by)
RUN_CWD=${FIN_RUN_CWD:-$WT}                                       # where the look runs (MLflow's ./mlruns lands there)
OUT=${FIN_OUT:-$MAIN/results/fer2013-compare}                     # the tables, the rows and the logs
KEPT=${FIN_KEPT:-$OUT/cells}                                      # the kept cells: each with its sealed.npz
DATA=${FIN_DATA:-$(cd "$WT/.." && pwd)/shared/data/fer2013}       # the data the cells trained on (for sealing)
FROM_SEALS=${FIN_FROM_SEALS:-0}   # 1: the cells' weights are lost; score every cell from its seal (README, rescue)
if [ "$FROM_SEALS" = 1 ]; then
    CELLS=$KEPT                                                   # the validation rows: the kept copies
    SCORED=${FIN_SCORED:-$RUNS-from-seals}                        # where the rows scored from the seals go
else
    CELLS=$RUNS
    SCORED=$RUNS
fi
ROWS=${FIN_ROWS:-30}                                              # 5 lines x 3 seeds x 2 test splits
SEEDS=${FIN_SEEDS:-3}
MODELS=${FIN_MODELS:-resnet18,vgg_khaireddin,efficientnet_b2,efficientnetv2_s}
TITLE=${FIN_TITLE:-45 CPU-minutes per backbone: from scratch, 48 px, 2-core CPU, 3 seeds}
BENCH_ARGS=${FIN_BENCH_ARGS:---repeats 7}
TIME_CHECK=${FIN_TIME_CHECK:-1}                                   # 0 only in the rehearsal (its cells have no pilots)
FB="$MAIN/.venv/bin/fer-bench"
PY="$MAIN/.venv/bin/python"
export HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
LOG="$OUT/finish.log"
mkdir -p "$OUT"

if [ "$MAIN" = "$(cd "$WT" && pwd)" ]; then
    echo "finish.sh: run main's copy of this script, not the run worktree's ($WT)" >&2
    exit 2
fi
if [ "$TIME_CHECK" != 1 ] && [ "$RUNS" = /work/compare-runs ]; then
    echo "finish.sh: FIN_TIME_CHECK=0 is for the rehearsal only; the comparison's rows get the plan's time check" >&2
    exit 2
fi
exec 9> "$OUT/finish.lock"
if ! flock -n 9; then
    echo "finish.sh: another finish.sh is running on $OUT (finish.lock); let it end" >&2
    exit 2
fi

step() {  # step NAME CMD...: run CMD, log it with its exit code, stop the script when it fails
    local name=$1
    shift
    echo "== $(date -u +%FT%TZ) $name: $*" | tee -a "$LOG"
    "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc" | tee -a "$LOG"
    if [ "$rc" -ne 0 ]; then
        echo "finish.sh: step '$name' failed (exit $rc); fix what it says and run finish.sh again" | tee -a "$LOG" >&2
        exit "$rc"
    fi
}

nothing_else_runs() {  # no trainer; the run tree clean and at the cells' code; then the watcher may go
    if pgrep -f "fer-bench run" > /dev/null; then
        echo "a 'fer-bench run' is still running (pid $(pgrep -f 'fer-bench run' | tr '\n' ' ')): let its cell finish"
        return 1
    fi
    local dirty
    dirty=$(git -C "$WT" status --porcelain -uno) || return 1
    if [ -n "$dirty" ]; then
        echo "$WT has uncommitted changes (the rows would be marked -dirty); commit them on the run's branch:"
        echo "$dirty"
        return 1
    fi
    if ! git -C "$WT" diff --quiet "$RUN_CODE" HEAD -- fer_bench pyproject.toml; then
        echo "$WT's fer_bench differs from $RUN_CODE, the code the cells trained with: check out the run's branch"
        return 1
    fi
    pkill -f "budget_watch.py $RUNS " && echo "stopped the budget watcher of $RUNS"
    echo "$WT at $(git -C "$WT" rev-parse --short HEAD) (fer_bench as $RUN_CODE), clean; no trainer running"
}

unblind() {  # the one test look, with the run's own code and store; its output also in unblind.log
    if [ "$FROM_SEALS" = 1 ]; then  # the same look from the sealed logits, through the run code's scoring
        "$WT/.venv/bin/python" "$MAIN/tools/seal_cell.py" "$KEPT"/*/ --data-dir "$DATA" --score "$SCORED" \
            --expect "$((ROWS / 2))" 2>&1 |
            tee -a "$OUT/unblind.log"
        return "${PIPESTATUS[0]}"
    fi
    cd "$RUN_CWD" && "$WT/.venv/bin/fer-bench" run --suite "$(cd "$WT" && realpath "$SUITE")" --out "$RUNS" \
        --tracking-uri "$TRACKING" --unblind --device cpu --no-progress 2>&1 | tee -a "$OUT/unblind.log"
}

keep_all() {  # every cell sealed and kept (the last cell had no window after it); committed unless COMMIT=0
    [ "$FROM_SEALS" = 1 ] && { echo "scoring from the seals: the cells are kept already"; return 0; }
    RUNS=$RUNS KEPT=$KEPT WT=$WT DATA=$DATA COMMIT=${FIN_COMMIT:-1} "$MAIN/results/fer2013-compare/keep_cell.sh"
}

copy_rows() {  # every scored cell's folder without weights and without the run code's own tables
    mkdir -p "$OUT/runs" "$OUT/cells"
    local n=0 d
    for d in "$SCORED"/*/; do
        [ -f "$d/result.json" ] || continue
        mkdir -p "$OUT/runs/$(basename "$d")"
        tar -C "$d" --exclude='*.pt' --exclude='sealed.*' -cf - . | tar -C "$OUT/runs/$(basename "$d")" -xpf - || return 1
        n=$((n + 1))
    done
    local logs=$RUNS  # the runs folder's logs; when it is lost, the copies keep_cell.sh kept
    [ -f "$RUNS/cells.log" ] || logs=$KEPT
    if [ "$(cd "$logs" && pwd)" != "$(cd "$OUT/cells" && pwd)" ]; then
        cp "$logs"/cells.log "$logs"/budget-watch.log "$logs"/cells-cpu-share*.txt "$OUT/cells/" || return 1
    fi
    echo "$n scored row(s) copied into $OUT/runs; logs and CPU samples into $OUT/cells"
    if [ "$n" -ne "$ROWS" ]; then
        echo "expected $ROWS scored rows (lines x seeds x test splits), found $n"
        return 1
    fi
}

line_folders() {  # line_folders LINE SPLIT: the line's scored folders of one split, joined by commas
    find "$OUT/runs" -maxdepth 1 -type d -name "$1-*-$2-s*" | sort | paste -sd, -
}

contrast() {  # the plan's contrast: InsideOut against v2-S under compare-48, on one test split, seeds as seeds
    local a b
    a=$(line_folders "efficientnetv2_s-insideout-effnetv2s-scratch" "$1")
    b=$(line_folders "efficientnetv2_s-compare-48" "$1")
    if [ "$(echo "$a" | tr ',' '\n' | grep -c .)" -ne "$SEEDS" ] || [ "$(echo "$b" | tr ',' '\n' | grep -c .)" -ne "$SEEDS" ]; then
        echo "expected $SEEDS $1 rows for each EfficientNetV2-S line under $OUT/runs; found: ${a:-none} / ${b:-none}"
        return 1
    fi
    echo "A: ${a//,/ }"
    echo "B: ${b//,/ }"
    "$FB" compare "$a" "$b" --json "$OUT/contrast-$1.json" | tee "$OUT/contrast-$1.txt"
}

tables() {  # the tables in four formats (CSV holds every column), the figures and the page, with main's code
    local fmt ext figures
    for fmt in md csv html latex; do
        ext=$fmt figures=()
        [ "$fmt" = latex ] && ext=tex
        [ "$fmt" = md ] && figures=(--plot "$OUT/pareto.png" --curves "$OUT/curves.png"
            --page "$OUT/leaderboard-page.html" --screenshot "$OUT/leaderboard-page.png")
        # the same page again, drawn tall enough to show its figures under the tables
        [ "$fmt" = html ] && figures=(--page "$OUT/leaderboard-page.html" --screenshot "$OUT/leaderboard-page-full.png"
            --screenshot-height 4000)
        "$FB" leaderboard --from-results "$OUT/runs" --bench "$OUT/bench" --published \
            --columns comparison,tta,cost,provenance --title "$TITLE" --format "$fmt" --out "$OUT/leaderboard.$ext" \
            "${figures[@]}" || return 1
    done
    # the default columns only: the short table the READMEs lead with
    "$FB" leaderboard --from-results "$OUT/runs" --bench "$OUT/bench" --title "$TITLE" --format md \
        --out "$OUT/leaderboard-short.md" || return 1
    # the READMEs' table: mean ± the seeds' sd, both intervals, the difference to the best (from the full CSV)
    local split
    for split in private public; do
        "$PY" "$MAIN/tools/readme_table.py" "$OUT/leaderboard.csv" --split "$split" > "$OUT/readme-table-$split.md" ||
            return 1
    done
}

time_check() {  # the plan's 10 % rule on every cell; its per-cell table (segments, minutes, ratio) kept as a file
    "$PY" "$MAIN/tools/budget_check.py" "$CELLS" "$(cd "$WT" && realpath "$PILOTS")" --cpu-class avx2 |
        tee "$OUT/time-check.txt"
    return "${PIPESTATUS[0]}"
}

cpu_hours() {
    "$PY" "$MAIN/tools/cpu_share.py" --sum "$OUT"/cells/cells-cpu-share*.txt | tee "$OUT/cpu-share-sum.txt"
}

echo "finish.sh $(date -u +%FT%TZ): main $(git -C "$MAIN" rev-parse --short HEAD), run tree $WT, rows $RUNS" >> "$LOG"
step "nothing else runs" nothing_else_runs
step "every cell kept" keep_all
NEED=--need-weights
[ "$FROM_SEALS" = 1 ] && NEED=
step "every cell sealed from its weights, kept and committed" "$PY" "$MAIN/tools/seal_cell.py" --verify "$CELLS" \
    --kept "$KEPT" --expect "$((ROWS / 2))" $NEED
if [ "$TIME_CHECK" = 1 ]; then
    step "time check" time_check
else
    echo "== time check skipped (FIN_TIME_CHECK=0: the rehearsal)" | tee -a "$LOG"
fi
step "plan check, the validation rows" "$PY" "$MAIN/tools/plan_check.py" "$CELLS" "$MAIN/results/fer2013-compare/PLAN.md"
step "the test look (--unblind)" unblind
step "the scored rows against the sealed logits" "$PY" "$MAIN/tools/seal_cell.py" --check-runs "$SCORED" --kept "$KEPT"
step "rows" copy_rows
step "plan check, the scored rows" "$PY" "$MAIN/tools/plan_check.py" "$OUT/runs" "$MAIN/results/fer2013-compare/PLAN.md"
step "bench" "$FB" bench --models "$MODELS" --img-size 48 --batch-size 64 --precision fp32 $BENCH_ARGS \
    --device cpu --no-track --out "$OUT/bench"
step "tables" tables
step "contrast, PrivateTest" contrast private
step "contrast, PublicTest" contrast public
step "CPU share" cpu_hours
{
    echo "finish.sh: done. Next: the README's table from $OUT/leaderboard.md, results/README.md, the top of README.md,"
    echo "the test looks (one, unless this log shows the look ran again), and a sceptical review."
} | tee -a "$LOG"
