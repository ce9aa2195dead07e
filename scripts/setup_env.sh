#!/bin/sh
# Create .venv (if missing) with the pinned torch/torchvision, then install hwq into it (editable).
# Idempotent: a second run only re-installs the package.
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first: the package is installed without build isolation and its build may import torch.
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q --no-build-isolation -e ".[test]"
