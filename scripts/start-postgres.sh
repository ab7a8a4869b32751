#!/usr/bin/env bash
# Install (if needed) and start Debian's PostgreSQL on 127.0.0.1, with one database each for MLflow and Optuna
# (both keep an alembic_version table; sharing one database breaks Optuna's schema check).
# Prints the two URIs as shell exports. Needs root (CI and these machines run as root).
set -euo pipefail
# Everything but the two export lines goes to stderr: the caller evals stdout (apt and pg_ctlcluster chatter,
# e.g. "Removed stale pid file.", would otherwise run as commands).
exec 3>&1 1>&2
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /etc/postgresql | sort -n | tail -1)
pg_ctlcluster "$ver" main start 2>/dev/null || true
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1" && break
  sleep 1
done
su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'fer-bench'\"" >/dev/null
for db in fer_bench_mlflow fer_bench_optuna; do
  su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='$db'\"" | grep -q 1 \
    || su postgres -c "createdb $db"
done
echo >&3 "export FER_BENCH_TEST_PG_MLFLOW=postgresql://postgres:fer-bench@127.0.0.1:5432/fer_bench_mlflow"
echo >&3 "export FER_BENCH_TEST_PG_OPTUNA=postgresql://postgres:fer-bench@127.0.0.1:5432/fer_bench_optuna"
