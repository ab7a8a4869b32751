#!/usr/bin/env bash
# Install (if needed) and start Debian's PostgreSQL on 127.0.0.1, with one database each for MLflow and Optuna
# (both keep an alembic_version table; sharing one database breaks Optuna's schema check).
# Prints the two URIs as shell exports. Needs root (CI and these machines run as root).
set -euo pipefail
# Everything but the two export lines goes to stderr: the caller evals stdout (apt and pg_ctlcluster chatter,
# e.g. "Removed stale pid file.", would otherwise run as commands).
exec 3>&1 1>&2
# A daemon started from here must inherit none of the caller's pipes: the PostgreSQL server keeps every fd it is
# given open for its whole life, so `$(scripts/start-postgres.sh)` would never see end-of-file and wait forever
# (what hung CI until its 90-min limit). `quiet CMD` runs CMD with stdin from /dev/null, stdout and stderr on a
# file (shown afterwards), and every other fd closed.
log=$(mktemp)
quiet() {
  python3 -c 'import os, sys; os.closerange(3, 65536); os.execvp(sys.argv[1], sys.argv[1:])' "$@" \
    </dev/null >"$log" 2>&1 || { cat "$log" >&2; return 1; }
  cat "$log" >&2
}
# Never wait on input: a client that wants a password must fail at once, not hang CI on an open stdin.
exec </dev/null
export PGCONNECT_TIMEOUT=10
diagnose() {
  echo "start-postgres: failed; cluster status, server log and local auth rules follow" >&2
  pg_lsclusters >&2 || true
  tail -n 20 /var/log/postgresql/postgresql-*-main.log >&2 2>/dev/null || true
  grep -v '^#' /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | grep -v '^\s*$' >&2 || true
}
trap diagnose ERR
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  quiet apt-get update -qq
  DEBIAN_FRONTEND=noninteractive quiet apt-get install -y -qq postgresql
fi
ver=$(ls /etc/postgresql | sort -n | tail -1)
quiet timeout 120 pg_ctlcluster "$ver" main start || true   # "already running" is fine
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1" && break
  sleep 1
done
su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'fer-bench'\"" >/dev/null
for db in fer_bench_mlflow fer_bench_optuna; do
  exists=$(su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='$db'\"")
  [ "$exists" = 1 ] || su postgres -c "createdb $db"
done
echo >&3 "export FER_BENCH_TEST_PG_MLFLOW=postgresql://postgres:fer-bench@127.0.0.1:5432/fer_bench_mlflow"
echo >&3 "export FER_BENCH_TEST_PG_OPTUNA=postgresql://postgres:fer-bench@127.0.0.1:5432/fer_bench_optuna"
