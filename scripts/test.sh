#!/usr/bin/env bash
# Set up (if needed), run the gates CI runs — ruff (lint and format) and mypy
# — then the test suite against real Redis and S3 servers that the fixtures
# start on free ports. Extra arguments go to pytest (e.g. -k upload).
# Two pytest processes (pytest-xdist, a file at a time each): most of the
# suite waits on services and real faults, so both cores stay busy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "test: ruff check"
.venv/bin/ruff check .
echo "test: ruff format --check"
.venv/bin/ruff format --check .
echo "test: mypy (shared, web, workers, ops, client)"
.venv/bin/mypy
echo "test: pytest"
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
