#!/usr/bin/env bash
# One entry point for a fresh clone: installs what is missing, then runs the job asked for.
#
#   bash deploy/dev.sh demo [ARGS]    local Kafka + synthetic traffic + worker + summary
#   bash deploy/dev.sh test [ARGS]    ruff, mypy, then the whole pytest suite (starts Kafka)
#   bash deploy/dev.sh unit [ARGS]    ruff, mypy, then the tests that need no broker (fast)
#   bash deploy/dev.sh bench [ARGS]   the throughput benchmark (bench/run.py)
#   bash deploy/dev.sh bench-judge    the judge benchmark (bench/judge.py)
#   bash deploy/dev.sh sh             a shell with the virtualenv on PATH
#
# The virtualenv lives in .venv; it is (re)installed when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)

if [[ ! -f $STAMP ]]; then
  echo "dev.sh: installing stream-eval and its dependencies into $VENV (first run: a few minutes)" >&2
  [[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
  if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
         "$VENV/bin/python" -m pip install -e '.[dev]'; } >"$VENV/install.log" 2>&1; then
    tail -n 40 "$VENV/install.log" >&2
    echo "dev.sh: install failed (full log: $VENV/install.log)" >&2
    exit 1
  fi
  rm -f "$VENV"/.installed-* && touch "$STAMP"
fi
export PATH=$PWD/$VENV/bin:$PATH

cmd=${1:-help}
shift || true
case $cmd in
  demo)
    exec stream-eval demo "$@" ;;
  test)
    ruff check stream_eval tests bench
    mypy
    bash deploy/kafka/kafka.sh start
    exec python -m pytest "$@" ;;
  unit)
    ruff check stream_eval tests bench
    mypy
    exec python -m pytest -m "not kafka" "$@" ;;
  bench)
    bash deploy/kafka/kafka.sh start
    exec python bench/run.py "$@" ;;
  bench-judge)
    exec python bench/judge.py "$@" ;;
  sh)
    exec bash ;;
  *)
    sed -n '2,10p' "$0"; exit 2 ;;
esac
