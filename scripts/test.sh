#!/usr/bin/env bash
# The test command: sets up .venv (CPU torch, all extras, TensorRT-RTX for the parser tests) and
# .venv-triton (the Triton server the serving tests start), then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt
.venv/bin/python -m pip check
# The Triton server's own venv (nvidia-pytriton pins numpy<2); quick when it is already complete.
bash scripts/setup_triton_venv.sh .venv
exec .venv/bin/python -m pytest "$@"
