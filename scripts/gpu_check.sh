#!/usr/bin/env bash
# GPU acceptance in one command, for a machine with a CUDA GPU: see `bash scripts/gpu_check.sh --help`.
# Uses .venv when it exists (bash scripts/test.sh creates it), else $PYTHON or python3 as it is:
# nothing is installed, so it also runs offline on a machine set up by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" scripts/gpu_check.py "$@"
