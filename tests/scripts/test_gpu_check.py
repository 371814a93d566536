"""``scripts/gpu_check.sh`` on a machine without a GPU: it runs, skips with reasons, and reports.

The checks that need a GPU cannot run here; what can is tested: the script end to end (every skip
has its reason, the report is strict JSON plus Markdown, the exit code), its option errors, and the
pieces that decide results (Polygraphy comparison, pytest XML reading, the ec-bench table).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import HAS_GPU

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "scripts"))
gpu_check = importlib.import_module("gpu_check")
gpu_check_trt = importlib.import_module("gpu_check_trt")
gpu_check_runs = importlib.import_module("gpu_check_runs")


def _run(*args, **kw):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(Path.home())}, **kw)


def _reject(constant):
    raise ValueError(f"non-standard JSON constant {constant}")


@pytest.mark.slow
@pytest.mark.skipif(HAS_GPU, reason="on a CUDA machine, run bash scripts/gpu_check.sh itself")
def test_without_a_gpu_every_check_is_skipped_with_its_reason(tmp_path):
    out = tmp_path / "report"
    proc = _run("--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 0 failed, 10 skipped" in proc.stdout
    report = json.loads((out / "gpu-check.json").read_text(), parse_constant=_reject)
    assert [c["name"] for c in report["checks"]] == gpu_check.NAMES and len(gpu_check.NAMES) == 11
    assert report["summary"] == {"passed": 1, "failed": 0, "skipped": 10}
    env, *rest = report["checks"]
    assert env["status"] == "pass" and report["environment"]["versions"]["numpy"]
    for check in rest:
        assert check["status"] == "skip" and "no CUDA device" in check["reason"], check
    md = (out / "gpu-check.md").read_text()
    assert "## Skipped, and why" in md and all(f"**{c['name']}**" in md for c in rest)
    again = _run("--out", out, "--only", "environment")  # a rerun into its own report directory is allowed
    assert again.returncode == 0 and "1 passed, 0 failed, 0 skipped" in again.stdout


def test_prerequisites_that_did_not_run_are_named(tmp_path):
    proc = _run("--out", tmp_path / "r", "--only", "environment,cuda_graph,bench")
    assert proc.returncode == 0, proc.stderr
    checks = {c["name"]: c for c in json.loads((tmp_path / "r" / "gpu-check.json").read_text())["checks"]}
    assert set(checks) == {"environment", "cuda_graph", "bench"}
    assert checks["cuda_graph"]["reason"] == "needs cuda_device, which was not run (--only/--skip)"
    assert checks["bench"]["reason"] == "needs engines, which was not run (--only/--skip)"


@pytest.mark.parametrize("args, message", [
    (["--only", "cuda_graph,warp_drive"], "unknown check warp_drive; choose from environment, cuda_device"),
    (["--skip", "nope"], "unknown check nope"),
    (["--timeout", "0"], "--timeout must be positive"),
    (["--export", "/nonexistent/export"], "--export /nonexistent/export is not an export directory"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    proc = _run("--out", tmp_path / "r", *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_refuses_a_directory_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = _run("--out", tmp_path, "--only", "environment")
    assert proc.returncode == 2 and "not written by this script" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_imports_nothing_heavy_and_lists_its_checks():
    code = ("import sys\nfor m in ('numpy', 'torch', 'onnxruntime', 'click', 'tensorrt'): sys.modules[m] = None\n"
            f"sys.argv = ['gpu_check.py', '--list']\nsys.path.insert(0, {str(ROOT / 'scripts')!r})\n"
            "import gpu_check\nsys.exit(gpu_check.main())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()] == gpu_check.NAMES


def test_a_check_that_raises_fails_with_its_traceback(tmp_path):
    ctx = gpu_check.gpu_check_cuda.Context(out=tmp_path)

    def broken(ctx):
        raise ValueError("engine file is empty")

    def partial(ctx):
        return {"figures": {"a": 1}, "failures": ["fp16 drifted"]}

    result = gpu_check.run_check(gpu_check.Check("x", "x", broken), ctx, {})
    assert result["status"] == "fail" and result["error"] == "ValueError: engine file is empty"
    assert "Traceback" in result["traceback"]
    result = gpu_check.run_check(gpu_check.Check("y", "y", partial), ctx, {})
    assert result["status"] == "fail" and result["error"] == "fp16 drifted" and result["figures"] == {"a": 1}
    done = {"x": {"status": "fail", "error": "ValueError: engine file is empty"}}
    result = gpu_check.run_check(gpu_check.Check("z", "z", partial, ("x",)), ctx, done)
    assert result["status"] == "skip" and result["reason"] == "needs x, which failed: ValueError: engine file is empty"
    gpu_check.write_report(tmp_path, "cmd", "now", [result], {"python": "3.x"})
    assert json.loads((tmp_path / "gpu-check.json").read_text())["summary"]["skipped"] == 1


def _model(path: Path, op: str, value: float = 0.0) -> Path:
    """A one-node ONNX model named like ours: gray (1,1,8,8) -> edges_out (Identity, Add value, or 1 - gray)."""
    import onnx
    from onnx import TensorProto, helper

    gray = helper.make_tensor_value_info("gray", TensorProto.FLOAT, [1, 1, 8, 8])
    out = helper.make_tensor_value_info("edges_out", TensorProto.FLOAT, [1, 1, 8, 8])
    const = helper.make_tensor("c", TensorProto.FLOAT, [], [value])
    node = {"identity": helper.make_node("Identity", ["gray"], ["edges_out"]),
            "add": helper.make_node("Add", ["gray", "c"], ["edges_out"]),
            "flip": helper.make_node("Sub", ["c", "gray"], ["edges_out"])}[op]
    graph = helper.make_graph([node], op, [gray], [out], initializer=[] if op == "identity" else [const])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_polygraphy_comparison_counts_flipped_pixels_and_tolerances(tmp_path):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    def runner(path):
        return OnnxrtRunner(SessionFromOnnx(str(path), providers=["cpu"]))

    binary = {"gray": (np.random.default_rng(0).random((1, 1, 8, 8)) > 0.5).astype(np.float32)}
    same = _model(tmp_path / "a.onnx", "identity")
    ok, rows = gpu_check_trt.compare_runners(runner(same), runner(same), binary, atol=0.5, binary=True)
    assert ok and rows == [{"output": "edges_out", "max_abs": 0.0, "mean_abs": 0.0, "flipped": 0}]
    flip = _model(tmp_path / "f.onnx", "flip", 1.0)
    ok, rows = gpu_check_trt.compare_runners(runner(same), runner(flip), binary, atol=0.5, binary=True)
    assert not ok and rows[0]["flipped"] == 64
    shifted = _model(tmp_path / "s.onnx", "add", 0.01)
    assert not gpu_check_trt.compare_runners(runner(same), runner(shifted), binary, atol=5e-3)[0]
    ok, rows = gpu_check_trt.compare_runners(runner(same), runner(shifted), binary, atol=2e-2)
    assert ok and rows[0]["max_abs"] == pytest.approx(0.01, abs=1e-6)


def test_pytest_xml_outcomes_and_missing_packages(tmp_path):
    (tmp_path / "test_a.py").write_text("import pytest\ndef test_ok(): pass\n"
                                        "def test_skip(): pytest.skip('no pycuda')\ndef test_bad(): assert 0\n")
    (tmp_path / "test_b.py").write_text("import not_a_real_package\n")
    xml = tmp_path / "r.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
                    f"--junitxml={xml}", str(tmp_path)], capture_output=True, timeout=120, cwd=tmp_path)
    outcome, missing = gpu_check_runs.junit_outcomes(xml)
    assert sorted(outcome.values()) == ["failed", "passed", "skipped: no pycuda"]
    assert list(missing.values()) == ["no module not_a_real_package"]


def test_bench_table_joins_graph_off_and_on_runs():
    def row(backend, precision, ms):
        return {"backend": backend, "precision": precision, "size": 256, "batch": 1,
                "latency": {"mean_ms": ms}, "throughput_img_s": 1e3 / ms}

    runs = {("demo", False): {"rows": [row("onnxruntime", "fp32", 40.0), row("tensorrt", "fp32", 2.0)]},
            ("demo", True): {"rows": [row("tensorrt", "fp32", 1.6)]}}
    assert gpu_check_runs.bench_table(runs) == ["| demo | fp32 | 256² | 1 | 40.00 | 2.00 | 1.60 | 1.25x | 625.0 |"]


def test_ctrl_c_stops_with_the_report_so_far(tmp_path, monkeypatch, capsys):
    def fine(ctx):
        return {"figures": {"ok": 1}}

    def interrupted(ctx):
        raise KeyboardInterrupt

    checks = [gpu_check.Check("first", "first", fine), gpu_check.Check("second", "second", interrupted)]
    monkeypatch.setattr(gpu_check, "CHECKS", checks)
    monkeypatch.setattr(gpu_check, "NAMES", ["first", "second"])
    assert gpu_check.main(["--out", str(tmp_path / "r")]) == 130
    assert "interrupted during second" in capsys.readouterr().err
    report = json.loads((tmp_path / "r" / "gpu-check.json").read_text())
    assert [c["name"] for c in report["checks"]] == ["first"] and report["summary"]["passed"] == 1
