"""The hardware's ceiling here: achieved GFLOP/s of one large fp32 convolution.

``python -m benchmarks.ceiling`` times a 3x3, 256->256 convolution on a 1x256x128x128 input (the
shape of the generators' residual blocks at 512^2, 19.3 GFLOP) in ONNX Runtime and in torch, and
writes the best as the ceiling to ``benchmarks/results/ceiling.json``. ``ec-bench`` divides each
row's achieved FLOP rate by it to report efficiency.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SHAPE = (1, 256, 128, 128)
KERNEL = 3


def conv_flops() -> float:
    n, c, h, w = SHAPE
    return 2.0 * n * c * c * KERNEL * KERNEL * h * w


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def ort_conv_seconds(repeats: int = 10, threads: int | None = None) -> float:
    """Best-of-``repeats`` time of the convolution in ONNX Runtime (CPU)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    c = SHAPE[1]
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((c, c, KERNEL, KERNEL)).astype(np.float32) * 0.02, "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random(SHAPE, dtype=np.float32)
    return _best(lambda: sess.run(None, {"x": x}), repeats)


def torch_conv_seconds(repeats: int = 10) -> float | None:
    """Best-of-``repeats`` time of the convolution in torch, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    conv = torch.nn.Conv2d(SHAPE[1], SHAPE[1], KERNEL, padding=1, bias=False).eval()
    x = torch.rand(SHAPE)

    def run():
        with torch.inference_mode():
            conv(x)

    return _best(run, repeats)


def measure(repeats: int = 10) -> dict:
    """Measure both backends and return the ceiling record."""
    flops = conv_flops()
    ort_s = ort_conv_seconds(repeats)
    torch_s = torch_conv_seconds(repeats)
    rates = {"onnxruntime": flops / ort_s / 1e9}
    if torch_s:
        rates["torch"] = flops / torch_s / 1e9
    return {"conv": {"input": list(SHAPE), "kernel": KERNEL, "gflop": flops / 1e9},
            "gflops_per_s": rates, "ceiling_gflops_per_s": max(rates.values())}


def load_ceiling(path: Path = RESULTS / "ceiling.json") -> float | None:
    """The committed ceiling in GFLOP/s, or None when it was never measured on this machine class."""
    try:
        return float(json.loads(path.read_text())["ceiling_gflops_per_s"])
    except (OSError, KeyError, ValueError):
        return None


def main() -> None:
    from benchmarks.environment import environment

    record = measure()
    record["environment"] = environment()
    record["command"] = "python -m benchmarks.ceiling"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ceiling.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    for name, rate in record["gflops_per_s"].items():
        print(f"{name:12s} {rate:8.1f} GFLOP/s")
    print(f"ceiling      {record['ceiling_gflops_per_s']:8.1f} GFLOP/s -> {RESULTS / 'ceiling.json'}")


if __name__ == "__main__":
    main()
