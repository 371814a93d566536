#!/usr/bin/env bash
# Sets up .venv-triton: the environment that `ec-serve` runs Triton Inference Server from.
#   bash scripts/setup_triton_venv.sh [MAIN_VENV]      (default: .venv)
# nvidia-pytriton (whose wheel bundles a CPU-capable tritonserver with the python backend) pins
# numpy<2, so it gets its own venv instead of downgrading the main one. The python-backend models
# import ec_runtime from here, so the project goes in with --no-deps, next to the same onnxruntime
# version as the main venv (the server's results then equal in-process results bit for bit).
# Idempotent: a complete venv is left as it is, so a second run takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."
main=${1:-.venv}
venv=.venv-triton
ort=$("$main/bin/python" -c "import onnxruntime; print(onnxruntime.__version__)")
stamp="numpy==1.26.4 nvidia-pytriton==0.7.0 onnxruntime==$ort opencv-python-headless==4.10.0.84"
if [ -f "$venv/.ec-setup" ] && [ "$(cat "$venv/.ec-setup")" = "$stamp" ] && [ -x "$venv/bin/ec-serve" ] \
   && "$venv/bin/python" -c "import ec_runtime.runners, pytriton" 2>/dev/null; then
    exit 0
fi
echo "== setup: $venv (tritonserver from nvidia-pytriton, numpy 1.26, onnxruntime $ort)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install -q $stamp click tqdm
"$venv/bin/python" -m pip install -q --no-deps -e .
"$venv/bin/python" -m pip check
echo "$stamp" > "$venv/.ec-setup"
