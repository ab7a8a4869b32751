#!/usr/bin/env bash
# Fresh-clone wall time of the README's test command: usage time_tests.sh REV NAME [extra pytest args]
set -uo pipefail
rev=$1; name=$2; shift 2
d=${FRESH_DIR:-..}/fresh-$name
rm -rf "$d"
git clone -q "${REPO:-$PWD}" "$d" && git -C "$d" checkout -q "$rev"
cd "$d"
start=$(date +%s.%N)
HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true scripts/test.sh -q -p no:cacheprovider "$@" > "/tmp/fresh-$name.log" 2>&1
rc=$?
end=$(date +%s.%N)
echo "$name rev=$(git rev-parse --short HEAD) rc=$rc wall_s=$(echo "$end - $start" | bc) $(date -u +%FT%TZ) $(tail -1 /tmp/fresh-$name.log)" | tee -a timings.txt
