#!/usr/bin/env bash
# Set up (if needed) and start the whole stack locally; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/audioq stack up "$@"
