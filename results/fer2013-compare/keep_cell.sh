#!/usr/bin/env bash
# Keep every finished cell where a lost machine cannot take it (PLAN.md, amendment of 2026-12-07 19:05 UTC): seal its
# test outputs with the cells' code (tools/seal_cell.py), copy its folder without weights into cells/ and commit
# that, with the suite's logs and CPU samples, on main. Cells already kept are skipped. No trainer may be running.
#     results/fer2013-compare/keep_cell.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAIN=$(cd "$HERE/../.." && pwd)
WT=${WT:-/work/run-compare}
RUNS=${RUNS:-/work/compare-runs}
DATA=${DATA:-$(cd "$WT/.." && pwd)/shared/data/fer2013}
KEPT=${KEPT:-$HERE/cells}
COMMIT=${COMMIT:-1}                               # 0: seal and copy only (the rehearsal)
if pgrep -f "fer-bench run --suite" > /dev/null; then
    echo "keep_cell.sh: a suite is running; keep cells between cells (window.sh), not beside one" >&2
    exit 2
fi
if [ "$COMMIT" = 1 ]; then  # the commit goes on main, never into a merge or rebase in progress
    branch=$(git -C "$MAIN" symbolic-ref --short -q HEAD || true)
    gitdir=$(git -C "$MAIN" rev-parse --git-dir)
    if [ "$branch" != main ] || [ -e "$gitdir/MERGE_HEAD" ] || [ -d "$gitdir/rebase-merge" ] || [ -d "$gitdir/rebase-apply" ]; then
        echo "keep_cell.sh: $MAIN is not on main with nothing in progress (branch '${branch:-detached}'); finish that first" >&2
        exit 2
    fi
fi
mkdir -p "$KEPT"
exec 8> "$RUNS/keep.lock"
flock 8  # one keeper at a time (a window and finish.sh may both call this)
new=()
for v in "$RUNS"/*/validation.json; do
    [ -f "$v" ] || continue
    d=$(dirname "$v")
    name=$(basename "$d")
    [ -f "$KEPT/$name/sealed.json" ] && continue
    # sealed.json is written last: without it the seal is redone
    [ -f "$d/sealed.json" ] || HF_HUB_OFFLINE=1 "$WT/.venv/bin/python" "$MAIN/tools/seal_cell.py" "$d" --data-dir "$DATA"
    rm -rf "$KEPT/$name.part" && mkdir -p "$KEPT/$name.part"
    tar -C "$d" --exclude='*.pt' --exclude='*.tmp' --exclude='sealed.tmp.*' -cf - . | tar -C "$KEPT/$name.part" -xf -
    rm -rf "${KEPT:?}/$name" && mv "$KEPT/$name.part" "$KEPT/$name"
    new+=("$name")
done
for f in cells.log budget-watch.log; do  # a kept log that is not the start of this one is a lost folder's: keep it beside
    [ -f "$RUNS/$f" ] || continue
    if [ -f "$KEPT/$f" ] && ! cmp -s -n "$(stat -c %s "$KEPT/$f")" "$KEPT/$f" "$RUNS/$f"; then
        mv "$KEPT/$f" "$KEPT/${f%.log}-until-$(date -u +%Y%m%dT%H%M%SZ).log"
    fi
    cp "$RUNS/$f" "$KEPT/$f"
done
cp "$RUNS"/cells-cpu-share*.txt "$KEPT/" 2> /dev/null || true  # one file per start: their names do not repeat
if [ "$COMMIT" != 1 ]; then
    echo "keep_cell.sh: kept ${new[*]:-nothing new} in $KEPT (not committed: COMMIT=0)"
    exit 0
fi
cd "$MAIN"
git add -- "$KEPT"
if git diff --cached --quiet -- "$KEPT"; then
    echo "keep_cell.sh: nothing new to keep"
    exit 0
fi
git commit -q -m "fer2013-compare: kept ${new[*]:-the logs} (validation row, sealed test outputs, no weights)" -- "$KEPT"
echo "keep_cell.sh: $(git log --oneline -1)"
