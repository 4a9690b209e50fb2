#!/usr/bin/env bash
# Re-pin constraints.txt: resolve pyproject.toml's dependencies (and the dev
# tools) afresh in a throw-away virtualenv and record the versions installed.
# Run after changing dependencies; then run the tests and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
echo "lock: resolving .[dev] (a minute or two)"
"$tmp/venv/bin/python" -m pip install -q '.[dev]'
"$tmp/venv/bin/python" -m pip install -q --no-deps basic-pitch==0.4.0
"$tmp/venv/bin/python" -m pip install -q ./client   # the API client (its tests run in the dev venv)
{
  echo "# Versions the tests passed with: set-up (scripts/setup.sh), CI and the Docker image"
  echo "# install with -c constraints.txt. Regenerate with scripts/lock.sh after changing pyproject.toml."
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v -i '^audioq'
} > constraints.txt
echo "lock: wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)"
