#!/usr/bin/env bash
# Set up a development machine: system packages where missing, then a
# virtualenv in .venv with audioq and its dev tools, at the versions pinned
# in constraints.txt (what the tests passed with). Safe to run again: it
# re-installs only when pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

# System packages, with apt-get, only where missing.
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
# docs/getting-started.md's commands, which a test runs.
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
# Debian splits venv/ensurepip out of python3 itself.
if [ ! -x .venv/bin/python ] && ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  need+=("python${ver}-venv")
fi
# Headless Chromium for the playground's browser tests (Debian's packages;
# never a downloaded browser build).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} with apt-get"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi

stamp=.venv/.audioq-installed
if [ ! -f "$stamp" ] || ! cat pyproject.toml client/pyproject.toml constraints.txt | cmp -s - "$stamp"; then
  say "installing Python packages into .venv (pinned by constraints.txt; about a minute the first time)"
  .venv/bin/python -m pip install --upgrade --progress-bar off -q pip
  if ! .venv/bin/python -m pip install --progress-bar off -c constraints.txt -e '.[dev]' \
      > .venv/pip.log 2>&1; then
    cat .venv/pip.log; exit 1
  fi
  # Dev only: a test checks our note decoder against basic-pitch's own. Its
  # metadata asks for TensorFlow, so it goes in without dependencies (the
  # product needs only its model file, which `audioq models fetch` copies).
  .venv/bin/python -m pip install --progress-bar off -q --no-deps -c constraints.txt basic-pitch==0.4.0
  # The API client (client/, its own package: httpx + tqdm), editable, so the
  # tests drive the real command line against the real stack.
  .venv/bin/python -m pip install --progress-bar off -q -c constraints.txt -e client/ >> .venv/pip.log 2>&1 \
    || { cat .venv/pip.log; exit 1; }
  grep -h '^Successfully installed' .venv/pip.log | cut -c1-160 || true
  cat pyproject.toml client/pyproject.toml constraints.txt > "$stamp"
  say "Python packages ready"
fi

say "checking the pretrained models (downloads about 80 MB the first time)"
.venv/bin/audioq models fetch
