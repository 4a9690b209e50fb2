#!/usr/bin/env bash
# Set up a development machine: system packages where missing, then a
# virtualenv in .venv with audioq and its dev tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (apt-get)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Reinstall only when the dependency list changed since the last set-up.
stamp=.venv/.audioq-installed
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  # basic-pitch's metadata asks for TensorFlow on Linux; we run its ONNX model
  # with onnxruntime, so it is installed without its declared dependencies
  # (the ones it really imports are in pyproject.toml).
  .venv/bin/python -m pip install -q --no-deps basic-pitch==0.4.0
  cp pyproject.toml "$stamp"
fi
# Pretrained models (once; a few seconds when already there): AUDIOQ_MODEL_DIR.
.venv/bin/audioq models fetch
