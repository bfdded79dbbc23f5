#!/usr/bin/env bash
# Installs warm-mini and its dependencies into the project's Python: $PYTHON if set, else the active
# virtual environment, else .venv/ (made here with `python3 -m venv`), so that pip never writes into a
# system Python (Debian and Ubuntu mark theirs as externally managed, PEP 668).
# .venv/ sees the system's packages (--system-site-packages) so that a torch already installed there is
# used, not copied (a minute and ~1 GB); pip installs into .venv/ whatever is missing or too old.
# torch first, on its own: an unpinned `torch` with none installed pulls a CUDA build of several GB,
# so a CPU-only machine gets the pinned release (our machines keep its CPU wheel on disk).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -n "${VIRTUAL_ENV:-}" ]; then PYTHON=python; else PYTHON=.venv/bin/python; fi
fi
if [ "$PYTHON" = .venv/bin/python ] && [ ! -x .venv/bin/python ]; then
  echo "making a virtual environment in .venv/ (activate it with: . .venv/bin/activate)"
  python3 -m venv --system-site-packages .venv || { rm -rf .venv; echo "error: 'python3 -m venv .venv' failed; install the venv module" \
    "(Debian/Ubuntu: apt install python3-venv) or activate a virtual environment, then rerun" >&2; exit 1; }
fi
# torch >= 2.4 (fused AdamW on CPU), as pyproject.toml requires
if ! "$PYTHON" -c "import sys, torch; sys.exit(tuple(map(int, torch.__version__.split('.')[:2])) < (2, 4))" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q torch
  else
    "$PYTHON" -m pip install -q torch==2.13.0
  fi
fi
# editable install, once: later runs find the packages installed (-I: not from this folder) and skip it;
# an install made before warm_pipeline/ existed is redone
"$PYTHON" -I -c "import warm_mini, warm_pipeline, warm_eval" 2>/dev/null || "$PYTHON" -m pip install -q -e ".[dev,plot]"
