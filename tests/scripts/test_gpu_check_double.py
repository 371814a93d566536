"""The TensorRT checks of ``scripts/gpu_check.sh`` run end to end on the GPU test double.

The double (``tests/ec_runtime/gpu_double.py``) stands in for TensorRT, pycuda and the CUDA graph
calls and enforces their contracts, so the engine build, the Inpainter comparison (batches, odd
sizes, crops, CUDA graphs replayed A, B, C, A) and the two ec-bench runs are exercised here exactly
as they run on a GPU. It proves the script's logic, not the speed or the numerics of a real GPU.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

from tests.ec_runtime.conftest import make_export
from tests.ec_runtime.trt_double import install

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
gpu_check_cuda = importlib.import_module("gpu_check_cuda")
gpu_check_trt = importlib.import_module("gpu_check_trt")
gpu_check_runs = importlib.import_module("gpu_check_runs")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check_double")
    make_export(out, tiny=True, precisions=("fp32", "fp16"))
    return out


@pytest.mark.slow
def test_engine_inpainter_and_bench_checks_pass_on_the_double(tiny_export, tmp_path, monkeypatch):
    gpu, _ = install(monkeypatch)
    monkeypatch.setattr(gpu_check_runs, "QUICK_BENCH", ("64", "1", "2", "1"))  # the double is slow
    export = tmp_path / "tiny"
    shutil.copytree(tiny_export, export)
    ctx = gpu_check_cuda.Context(out=tmp_path / "report", quick=True, exports_given=[export])
    ctx.out.mkdir()
    given = gpu_check_trt.check_export(ctx)  # --export: copied, the user's directory is left alone
    assert given["figures"] == {"exports": 1} and ctx.state["exports"] == {"tiny": ctx.out / "export-tiny"}

    engines = gpu_check_trt.check_engines(ctx)
    assert engines["failures"] == []
    rows = [r for r in engines["details"] if r.startswith("| tiny |")]
    assert len(rows) == 6 and all(r.endswith("| yes |") for r in rows)  # canny, edge, inpaint x fp32, fp16

    assert not list(export.glob("*.engine")) and "engines" not in (export / "export.json").read_text()

    painted = gpu_check_trt.check_inpainter(ctx)
    assert painted["failures"] == [], painted["failures"]
    assert painted["figures"]["cases"] == 2 * (3 + 4)  # 2 precisions x (graphs off: 3 cases, on: A, B, C, A)
    assert gpu.counts["capture"] > 0 and gpu.counts["replay"] > 0

    bench = gpu_check_runs.check_bench(ctx)
    assert bench["failures"] == [], bench["failures"]
    table = [r for r in bench["details"] if r.startswith("| tiny |")]
    assert [r.split(" | ")[1] for r in table] == ["fp32", "fp16"] and all("x |" in r for r in table)


def test_auto_falling_back_to_onnxruntime_is_a_failure(tiny_export, tmp_path, monkeypatch):
    install(monkeypatch)
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    ctx = gpu_check_cuda.Context(out=tmp_path / "report", quick=True)
    ctx.out.mkdir()
    ctx.state["exports"] = {"tiny": export}
    assert gpu_check_trt.check_engines(ctx)["failures"] == []
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)  # the runtime cannot drive the engines now
    monkeypatch.setitem(sys.modules, "pycuda", None)
    with pytest.raises(gpu_check_cuda.Skip, match="pycuda is not installed"):
        gpu_check_trt.check_inpainter(ctx)
