"""``ec-bench --cuda-graph``: TensorRT rows run with CUDA graph capture, and the report says so."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks import bench
from benchmarks.cli import main


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_graph_reaches_only_the_tensorrt_inpainter(monkeypatch, cuda_graph):
    import ec_runtime.pipeline as pipeline

    calls = []

    def fake_from_dir(export_dir, **kwargs):  # records the request, then fails like a machine without a GPU
        calls.append(kwargs)
        raise RuntimeError(f"no {kwargs['backend']} here")

    monkeypatch.setattr(pipeline.Inpainter, "from_dir", staticmethod(fake_from_dir))
    cfg = bench.BenchConfig(export_dir=Path("x"), backends=("onnxruntime", "tensorrt"), precisions=("fp32",),
                            cuda_graph=cuda_graph)
    info = {"models": {"edge": {"fp32": "edge.onnx"}}}
    cases, _ = bench._build_cases(cfg, info, None, None, {}, skipped := [])
    assert not cases and [s["backend"] for s in skipped] == ["onnxruntime", "tensorrt"]
    by_backend = {c["backend"]: c for c in calls}
    assert by_backend["tensorrt"].get("cuda_graph", False) is cuda_graph
    assert by_backend["onnxruntime"].get("cuda_graph", False) is False


def test_cuda_graph_option_is_documented_and_recorded(monkeypatch, tiny_export):
    assert "--cuda-graph" in CliRunner().invoke(main, ["--help"]).output
    seen = {}

    def fake_run_bench(cfg, progress=True):
        seen["cfg"] = cfg
        return {"rows": [], "skipped": [{"backend": "tensorrt", "precision": "fp32", "reason": "no GPU"}]}

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    result = CliRunner().invoke(main, [str(tiny_export), "--backends", "tensorrt", "--cuda-graph", "-q"])
    assert seen["cfg"].cuda_graph is True
    assert result.exit_code != 0 and "tensorrt fp32: no GPU" in result.output
