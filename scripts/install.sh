#!/usr/bin/env bash
# Installs warm-mini and its dependencies into the current Python.
# torch first, on its own: an unpinned `torch` with none installed pulls a CUDA build of several GB,
# so a CPU-only machine gets the pinned release (our machines keep its CPU wheel on disk).
set -euo pipefail
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q torch
  else
    "$PYTHON" -m pip install -q torch==2.13.0
  fi
fi
# editable install, once: later runs find the package's metadata and skip it
"$PYTHON" -c "import importlib.metadata as m; m.version('warm-mini')" 2>/dev/null || "$PYTHON" -m pip install -q -e ".[dev,plot]"
