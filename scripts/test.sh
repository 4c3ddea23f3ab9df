#!/usr/bin/env bash
# Install tuneserve with its test tools in .venv and run the whole test suite.
# Needs PostgreSQL (127.0.0.1:5432, user postgres, database test) and Redis (127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install --quiet --upgrade pip
pip install --quiet torch==2.13.0          # the CPU build; pip takes it before the project
pip install --quiet -e ".[test]"
ruff check .
ruff format --check .
mypy
# Three test processes: most end-to-end tests wait on the processes they start, so three share
# two cores well (TUNESERVE_TEST_WORKERS=0 runs them in this process, one at a time).
HF_HUB_OFFLINE=1 python -m pytest -n "${TUNESERVE_TEST_WORKERS:-3}" --dist load "$@"
