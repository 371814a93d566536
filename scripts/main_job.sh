#!/usr/bin/env bash
# The main job: set up, export the demo model, inpaint held-out photos with generated holes,
# write a before/after montage and a short ec-bench summary, serve the export with Triton Inference
# Server and inpaint one photo through it, and say where everything is.
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

echo "== 1/5 export the demo model (lite-fill variant trained with ec-train on open photos)"
demo=$($bin/python -c "from ec_train.pretrained import demo_checkpoint; print(demo_checkpoint())")
if [ "$quick" = 1 ]; then
    $bin/ec-export "$demo" -o "$out/export" -q
else
    $bin/ec-export "$demo" -o "$out/export" --fp16 --int8
fi

echo "== 2/5 held-out photos with generated holes"
count=4; [ "$quick" = 1 ] && count=2
$bin/python scripts/demo_samples.py make "$out/samples" --count $count --size 512

echo "== 3/5 inpaint with ec-inpaint (ONNX Runtime, CPU) and build the montage"
$bin/ec-inpaint "$out/samples/photos" --mask "$out/samples/masks" -o "$out/inpainted" --model "$out/export" --save-edges --overwrite
$bin/python scripts/demo_samples.py montage "$out/samples" "$out/inpainted" "$out/montage.png"

echo "== 4/5 a short ec-bench summary"
if [ "$quick" = 1 ]; then
    $bin/ec-bench "$out/export" --precisions fp32 --sizes 256 --batch 1 --warmup 1 --iters 2 -q \
        --json "$out/bench.json" --markdown "$out/bench.md" --plot "$out/bench.png"
else
    $bin/ec-bench "$out/export" --sizes 256,512 --batch 1 --warmup 1 --iters 5 -q \
        --json "$out/bench.json" --markdown "$out/bench.md" --plot "$out/bench.png"
fi

echo "== 5/5 serve the export with Triton (ec-serve) and inpaint one photo through it"
bash scripts/setup_triton_venv.sh .venv
$bin/ec-export triton "$out/export" -o "$out/triton-repo" --backend python
read -r http grpc metrics < <($bin/python -c "
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(('127.0.0.1', 0))
print(*[s.getsockname()[1] for s in socks])")
.venv-triton/bin/ec-serve "$out/triton-repo" --http-port "$http" --grpc-port "$grpc" --metrics-port "$metrics" \
    > "$out/serve.log" 2>&1 &
serve_pid=$!
trap 'kill -TERM $serve_pid 2>/dev/null || true; wait $serve_pid 2>/dev/null || true' EXIT
for _ in $(seq 360); do
    grep -q '^ready:' "$out/serve.log" && break
    kill -0 $serve_pid 2>/dev/null || { cat "$out/serve.log"; exit 1; }
    sleep 0.5
done
grep '^ready:' "$out/serve.log" || { echo "ec-serve did not become ready"; cat "$out/serve.log"; exit 1; }
photo=$(ls "$out/samples/photos" | head -n 1)
$bin/ec-inpaint "$out/samples/photos/$photo" --mask "$out/samples/masks" -o "$out/served/$photo" \
    --server "http://127.0.0.1:$http" --overwrite
if cmp -s "$out/served/$photo" "$out/inpainted/${photo%.*}.png"; then
    echo "served/$photo is identical to the in-process result"
else
    echo "served/$photo differs from the in-process result"; exit 1
fi
kill -TERM $serve_pid; wait $serve_pid || true
trap - EXIT

echo
echo "Results in $out/:"
echo "  montage.png         input | edges | inpainted | original, one row per photo"
echo "  inpainted/          the inpainted photos (and their edge maps)"
echo "  bench.md bench.png  latency of torch vs ONNX Runtime on this machine"
echo "  export/             the exported ONNX models (export.json records accuracy per precision)"
echo "  triton-repo/        the export as a Triton model repository; serve it: .venv-triton/bin/ec-serve $out/triton-repo"
echo "  served/             one photo inpainted through the Triton server (identical to inpainted/)"
