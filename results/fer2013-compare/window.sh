#!/usr/bin/env bash
# A window between two cells: wait until one more cell has its validation row, stop the suite (the next cell has
# only just started: it starts again from its beginning), keep the finished cell (keep_cell.sh: sealed test outputs,
# its folder into main without weights), run CMD with the cores to itself, then resume the cells with cells.sh,
# unless the time-rule watcher stopped the suite (a line to re-derive first) or RESUME=0.
#     results/fer2013-compare/window.sh NAME ['CMD']      # log: /tmp/window-NAME.log
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAIN=$(cd "$HERE/../.." && pwd)
RUNS=${RUNS:-/work/compare-runs}
NAME=$1
CMD=${2:-true}
LOG=/tmp/window-$NAME.log
rows() { find "$RUNS" -maxdepth 2 -name validation.json 2> /dev/null | wc -l; }
nos() { local n; n=$(grep -c ': NO' "$RUNS/budget-watch.log" 2> /dev/null); echo "${n:-0}"; }

start_rows=$(rows)
start_nos=$(nos)
echo "$(date -u +%T) window $NAME: waiting for row $((start_rows + 1))" >> "$LOG"
while [ "$(rows)" -le "$start_rows" ]; do sleep 10; done
pid=$(cat "$RUNS/cells.pid")
kill -TERM -- "-$pid" 2> /dev/null || kill -TERM "$pid"
while kill -0 "$pid" 2> /dev/null; do sleep 1; done
echo "== $(date -u +%FT%TZ) window $NAME: suite stopped after row $((start_rows + 1))" >> "$RUNS/cells.log"
echo "$(date -u +%T) window $NAME: suite stopped; keeping the new cell" >> "$LOG"
cd "$MAIN" || exit 1
if ! "$HERE/keep_cell.sh" >> "$LOG" 2>&1; then  # the plan keeps every cell before the next one trains
    echo "$(date -u +%T) window $NAME: keep_cell FAILED: the cells stay stopped (fix, keep, then cells.sh)" >> "$LOG"
    exit 1
fi
echo "$(date -u +%T) window $NAME: cell kept; running: $CMD" >> "$LOG"
bash -c "$CMD" >> "$LOG" 2>&1
echo "$(date -u +%T) window $NAME: command exit $?" >> "$LOG"
sleep 35  # the watcher polls every 30 s: let it have judged the new row before deciding to resume
if [ "${RESUME:-1}" != 1 ]; then
    echo "$(date -u +%T) window $NAME: RESUME=0, the cells stay stopped" >> "$LOG"
elif [ "$(nos)" -gt "$start_nos" ]; then
    echo "$(date -u +%T) window $NAME: the watcher said NO: the cells stay stopped (re-derive first)" >> "$LOG"
elif ! pgrep -f "budget_watch.py $RUNS " > /dev/null; then
    echo "$(date -u +%T) window $NAME: the watcher is not running, so the new row is unjudged: the cells stay stopped" >> "$LOG"
elif "$HERE/cells.sh" >> "$LOG" 2>&1; then
    echo "$(date -u +%T) window $NAME: cells resumed" >> "$LOG"
else
    echo "$(date -u +%T) window $NAME: cells.sh refused (above): the cells stay stopped" >> "$LOG"
fi
