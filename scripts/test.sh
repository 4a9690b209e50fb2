#!/usr/bin/env bash
# Set up (if needed) and run the test suite against real Redis and S3
# servers that the fixtures start on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
