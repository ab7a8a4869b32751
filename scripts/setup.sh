#!/usr/bin/env bash
# Create .venv (if missing) and install fer-bench with its test extra; a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.fer-bench-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing fer-bench and its dependencies into .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  # (the machine's pip config lists local index folders that may not exist; their warnings are noise)
  .venv/bin/python -m pip install --quiet -e '.[test]' 2>&1 | { grep -v "^WARNING: Location 'file:" || true; } >&2
  echo "$want" > "$stamp"
fi
