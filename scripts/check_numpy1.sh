#!/usr/bin/env bash
# The torch-free runtime on numpy 1.x and, where one is installed, Python 3.10 (JetPack 6's Python).
#
#   bash scripts/check_numpy1.sh [--inpaint IMAGE MASK OUTPUT]
#
# Sets up a separate venv (default .venv-numpy1, reused while scripts/requirements-numpy1.txt and
# pyproject.toml are unchanged) from scripts/requirements-numpy1.txt: numpy 1.26, the last OpenCV and
# ONNX Runtime releases for it, and this repo's base install (no torch). Then it runs the runtime
# tests that need no torch and one ec-inpaint with the bundled demo model.
#   PYTHON=/path/to/python   interpreter for the venv (default: python3.10 if found, else python3)
#   VENV=dir                 where the venv lives
# --inpaint runs ec-inpaint on IMAGE/MASK (written to OUTPUT) instead of a drawn test image.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv-numpy1}
reqs=scripts/requirements-numpy1.txt

find_python() {  # the first candidate that really runs (pyenv shims exist for versions not selected)
    local root=${PYENV_ROOT:-$HOME/.pyenv} p
    for p in ${PYTHON:-} python3.10 "$root"/versions/3.10.*/bin/python3.10 python3; do
        if "$p" -c "import venv" >/dev/null 2>&1; then command -v "$p"; return; fi
    done
    echo "error: no usable python3 found; set PYTHON=/path/to/python" >&2
    exit 2
}

py=$(find_python)
if [ -n "${PYTHON:-}" ] && [ "$py" != "$(command -v "$PYTHON")" ]; then
    echo "error: PYTHON=$PYTHON does not run" >&2; exit 2
fi
stamp=$( (cat "$reqs" pyproject.toml; echo "$py") | sha256sum | cut -c1-16)
if [ ! -f "$venv/.ec-numpy1-stamp" ] || [ "$(cat "$venv/.ec-numpy1-stamp")" != "$stamp" ]; then
    if [ -e "$venv" ] && [ ! -f "$venv/.ec-numpy1-stamp" ]; then
        echo "error: $venv exists and was not made by this script; set VENV=another/dir" >&2
        exit 2
    fi
    echo "== setup: $venv with $("$py" --version 2>&1) and $reqs"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -r "$reqs"
    echo "$stamp" > "$venv/.ec-numpy1-stamp"
fi
bin=$venv/bin
"$bin/python" - <<'PY'
import sys
import cv2, numpy, onnxruntime
assert numpy.__version__.startswith("1."), f"expected numpy 1.x, got {numpy.__version__}"
print(f"== Python {sys.version.split()[0]}, numpy {numpy.__version__}, opencv {cv2.__version__}, "
      f"onnxruntime {onnxruntime.__version__}")
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    sys.exit("torch is installed in the numpy 1 venv; the runtime must not need it")
PY

echo "== runtime tests that need no torch"
"$bin/python" -m pytest -q -p no:cacheprovider tests/ec_runtime/test_imageio.py tests/ec_runtime/test_strategies.py \
    tests/ec_runtime/test_tensorrt_support.py tests/ec_runtime/test_cuda_graphs.py tests/ec_runtime/test_python310.py \
    tests/hostile/test_inpaint_inputs.py tests/hostile/test_inpaint_outputs.py

echo "== ec-inpaint with the bundled demo model"
if [ "${1:-}" = "--inpaint" ]; then
    [ $# -eq 4 ] || { echo "usage: $0 [--inpaint IMAGE MASK OUTPUT]" >&2; exit 2; }
    image=$2; mask=$3; output=$4
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    image=$work/drawn.png; mask=$work/hole.png; output=$work/filled.png
    "$bin/python" - "$image" "$mask" <<'PY'
import sys
import cv2, numpy as np
y, x = np.mgrid[0:183, 0:250]
img = np.stack([x * 255 // 249, y * 255 // 182, (x + y) * 255 // 431], -1).astype(np.uint8)
cv2.circle(img, (120, 90), 50, (250, 240, 30), -1)
cv2.rectangle(img, (20, 20), (90, 150), (30, 60, 200), 6)
mask = np.zeros(img.shape[:2], np.uint8)
cv2.rectangle(mask, (100, 70), (160, 120), 255, -1)
cv2.imwrite(sys.argv[1], img[..., ::-1]); cv2.imwrite(sys.argv[2], mask)
PY
fi
"$bin/ec-inpaint" "$image" --mask "$mask" -o "$output" --model ec_runtime/models/demo
echo "numpy 1 check passed: wrote $output"
