#!/usr/bin/env bash
# The GPU checks as one command of <= 9 min, for a short GPU loan (a start takes a few minutes of it). It writes an archive into $OUT after each phase, since what is under $OUT comes back even when the
# command is cut off (at most 8 files): conditions.txt, gpu-check.log, sprint.tar.gz, bench.tar.gz.
#
#   1. sprint (<= 6 min): benchmarks/fer2013-gpu-sprint.yaml, 5 families x 3 seeds, --jobs, untracked (the GPU
#      machine's Python has torch but no mlflow); the leaderboard is rebuilt here from the result files.
#   2. bench (<= 3 min): `fer-bench bench` for the half of the grid results/bench-gpu left open: channels_last, fp32
#      and amp_bf16, the four families at 48 and 224 px, plus resnet18 at 48 px.
#
# Here, once (the GPU machine cannot see ../shared; the pack is the FER2013 JPEGs byte for byte, ~57 MB):
#   python scripts/fer2013_pack.py pack ../shared/data/fer2013 .gpu && git rev-parse HEAD > .gpu/GIT_SHA
#   echo /.gpu/ >> .git/info/exclude
# Then one device call:  run(command="scripts/gpu-check.sh", carry=[".gpu"], timeout_s=600)
# Rehearsal on CPU with tiny settings (tests/test_gpu_check.py does this):  GPU_CHECK_TINY=1 scripts/gpu-check.sh
#
# Environment: OUT (default ./gpu-check-out), DATA (a FER2013 folder tree, or a folder with fer2013.pack; default
# .gpu), PYTHON (default python3), SPRINT_S / BENCH_S (phase time limits, default 360 / 170), JOBS (default 8).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
DATA=${DATA:-$PWD/.gpu}
PY=${PYTHON:-python3}
TINY=${GPU_CHECK_TINY:-0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
mkdir -p "$OUT"
LOG=$OUT/gpu-check.log
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export FER_BENCH_CACHE=$WORK/cache
if [ -z "${FER_BENCH_GIT_SHA:-}" ]; then
    FER_BENCH_GIT_SHA=$(cat "$DATA/GIT_SHA" 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)
    export FER_BENCH_GIT_SHA
fi

say() { echo "[gpu-check $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

# Tiny settings rehearse every step on CPU in about a minute; the real ones are the sprint's.
if [ "$TINY" = 1 ]; then
    DEVICE=cpu; JOBS=${JOBS:-2}; SPRINT_S=${SPRINT_S:-300}; BENCH_S=${BENCH_S:-120}
    SPRINT_ARGS=(--seeds 0 --epochs 1 --limit-train 14 --img-size 32 --set eval.tta=[none]
                 --set data.val_fraction=0.25 --set train.batch_size=8 --set schedule.warmup_epochs=0.5)
    BENCH_RUNS=("resnet18 32 fp32")
    BENCH_ARGS=(--repeats 1 --steps 1 --warmup-s 0 --batch-size 4)
else
    DEVICE=cuda; JOBS=${JOBS:-8}; SPRINT_S=${SPRINT_S:-360}; BENCH_S=${BENCH_S:-170}
    SPRINT_ARGS=()
    BENCH_RUNS=("efficientnetv2_s,efficientnet_b2,resnet50,vgg16_bn 48,224 fp32"
                "efficientnetv2_s,efficientnet_b2,resnet50,vgg16_bn 48,224 amp_bf16"
                "resnet18 48 fp32" "resnet18 48 amp_bf16")
    BENCH_ARGS=(--repeats 5 --steps 6 --batch-size 256)
fi

# Phase 0: conditions, and the data where fer-bench can read it.
{
    echo "date_utc: $(date -u +%FT%TZ)"; echo "git_sha: $FER_BENCH_GIT_SHA"; echo "tiny: $TINY"; echo "device: $DEVICE"
    echo "host: $(uname -a)"; echo "cpus: $(nproc)"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "nvidia-smi: none"
    "$PY" -c "import sys, torch, torchvision; print('python', sys.version.split()[0]); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version()); print('torchvision', torchvision.__version__); print('cuda_available', torch.cuda.is_available())"
    "$PY" -c "import timm, pandas, sklearn, tabulate, yaml; print('timm', timm.__version__, 'pandas', pandas.__version__, 'sklearn', sklearn.__version__)"
    "$PY" -c "import mlflow" 2>/dev/null && echo "mlflow: present (not used)" || echo "mlflow: absent (runs untracked)"
} > "$OUT/conditions.txt" 2>&1
say "conditions written; work folder $WORK"
if [ -f "$DATA/fer2013.pack" ]; then
    "$PY" scripts/fer2013_pack.py unpack "$DATA" "$WORK/fer2013" >> "$LOG" 2>&1 || { say "unpack failed"; exit 2; }
    TREE=$WORK/fer2013
elif [ -d "$DATA/train" ]; then
    TREE=$DATA
else
    say "no FER2013 at $DATA (neither fer2013.pack nor train/): see the header of $0"; exit 2
fi
say "data: $TREE"

# Phase 1: the sprint suite. timeout sends SIGTERM to the suite; finished cells keep their result files.
say "sprint: up to ${SPRINT_S}s, --jobs $JOBS"
SECONDS=0
timeout --signal=TERM --kill-after=20 "$SPRINT_S" "$PY" -m fer_bench run --suite benchmarks/fer2013-gpu-sprint.yaml \
    --data-dir "$TREE" --device "$DEVICE" --jobs "$JOBS" --no-track --no-progress --out "$WORK/sprint" \
    "${SPRINT_ARGS[@]}" >> "$LOG" 2>&1
rc=$?
say "sprint: exit $rc after ${SECONDS}s ($(find "$WORK/sprint" -name result.json 2>/dev/null | wc -l) result files)"
echo "sprint_exit: $rc" >> "$OUT/conditions.txt"; echo "sprint_wall_s: $SECONDS" >> "$OUT/conditions.txt"
# Everything but checkpoints: rows, predictions, learning curves, logs, the leaderboard.
tar -czf "$OUT/sprint.tar.gz" -C "$WORK" --exclude='*.pt' sprint 2>> "$LOG"
say "sprint archive: $(du -h "$OUT/sprint.tar.gz" | cut -f1)"

# Phase 2: the bench grid, channels_last. One timeout over the whole phase; each invocation writes its CSV.
say "bench: up to ${BENCH_S}s"
SECONDS=0
mkdir -p "$WORK/bench"
bench_rc=0
for spec in "${BENCH_RUNS[@]}"; do
    read -r models sizes prec <<< "$spec"
    left=$((BENCH_S - SECONDS))
    if [ "$left" -le 5 ]; then say "bench: no time left for $spec"; break; fi
    timeout --signal=TERM --kill-after=10 "$left" "$PY" -m fer_bench bench --models "$models" --img-size "$sizes" \
        --precision "$prec" --channels-last --device "$DEVICE" --data-dir "$TREE" --dataset fer2013 --no-track \
        --out "$WORK/bench" "${BENCH_ARGS[@]}" >> "$LOG" 2>&1
    r=$?; [ "$r" -ne 0 ] && bench_rc=$r
    say "bench $spec: exit $r at ${SECONDS}s"
done
echo "bench_wall_s: $SECONDS" >> "$OUT/conditions.txt"
tar -czf "$OUT/bench.tar.gz" -C "$WORK" bench 2>> "$LOG"
say "bench archive: $(du -h "$OUT/bench.tar.gz" | cut -f1)"
say "done: $(ls "$OUT" | tr '\n' ' ')"
# a phase that failed fails the command, after every phase has had its turn and written its archive
[ "$rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
