#!/usr/bin/env bash
# The main job: set up, export the demo model, inpaint held-out photos with generated holes,
# write a before/after montage and a short ec-bench summary, and say where everything is.
#   bash scripts/main_job.sh [RESULTS_DIR]        (default: results/)
# QUICK=1 runs a shortened form (FP32 only, two photos, smaller benchmark) for CI.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results}
quick=${QUICK:-0}

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
if ! .venv/bin/python -c "import ec_train, ec_export, ec_runtime, torch" 2>/dev/null; then
    echo "== setup: .venv (CPU torch, the toolkit and its extras)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements-dev.txt
fi
bin=.venv/bin
mkdir -p "$out"

echo "== 1/4 export the demo model (lite variant trained with ec-train on open photos)"
demo=$($bin/python -c "from ec_train.pretrained import demo_checkpoint; print(demo_checkpoint())")
if [ "$quick" = 1 ]; then
    $bin/ec-export "$demo" -o "$out/export" -q
else
    $bin/ec-export "$demo" -o "$out/export" --fp16 --int8
fi

echo "== 2/4 held-out photos with generated holes"
count=4; [ "$quick" = 1 ] && count=2
$bin/python scripts/demo_samples.py make "$out/samples" --count $count --size 512

echo "== 3/4 inpaint with ec-inpaint (ONNX Runtime, CPU) and build the montage"
$bin/ec-inpaint "$out/samples/photos" --mask "$out/samples/masks" -o "$out/inpainted" --model "$out/export" --save-edges --overwrite
$bin/python scripts/demo_samples.py montage "$out/samples" "$out/inpainted" "$out/montage.png"

echo "== 4/4 a short ec-bench summary"
if [ "$quick" = 1 ]; then
    $bin/ec-bench "$out/export" --precisions fp32 --sizes 256 --batch 1 --warmup 1 --iters 2 -q \
        --json "$out/bench.json" --markdown "$out/bench.md" --plot "$out/bench.png"
else
    $bin/ec-bench "$out/export" --sizes 256,512 --batch 1 --warmup 1 --iters 5 -q \
        --json "$out/bench.json" --markdown "$out/bench.md" --plot "$out/bench.png"
fi

echo
echo "Results in $out/:"
echo "  montage.png         input | edges | inpainted | original, one row per photo"
echo "  inpainted/          the inpainted photos (and their edge maps)"
echo "  bench.md bench.png  latency of torch vs ONNX Runtime on this machine"
echo "  export/             the exported ONNX models (export.json records accuracy per precision)"
