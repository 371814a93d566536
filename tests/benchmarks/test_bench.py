"""ec-bench on a tiny model: every field of the JSON report exists and is finite."""

import json
import math

import pytest
from click.testing import CliRunner

from benchmarks.cli import main
from benchmarks.report import ROW_FIELDS

STAGES = {"host_pre", "canny", "edge", "inpaint", "host_post"}


def _finite(x):
    return x is not None and math.isfinite(x)


def test_bench_report_has_every_field(tiny_export, tmp_path):
    out = tmp_path / "r"
    result = CliRunner().invoke(main, [str(tiny_export), "--sizes", "32", "--batch", "1,2", "--iters", "3",
                                       "--warmup", "1", "--threads", "1", "--json", str(out / "r.json"),
                                       "--markdown", str(out / "r.md"), "--plot", str(out / "r.png"), "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "r.json").read_text())
    for key in ("environment", "command", "model", "settings", "rows", "skipped", "ceiling_gflops_per_s"):
        assert key in report
    env = report["environment"]
    assert env["cpu"] and env["cpu_cores"] >= 1 and env["versions"]["onnxruntime"] and env["date"]
    rows = report["rows"]
    keys = {(r["backend"], r["precision"], r["batch"]) for r in rows}
    assert keys == {(b, p, n) for n in (1, 2) for b, p in [("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]}
    for r in rows:
        assert set(ROW_FIELDS) <= set(r)
        assert all(_finite(r["latency"][k]) and r["latency"][k] > 0 for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms"))
        assert r["latency"]["min_ms"] <= r["latency"]["p50_ms"] <= r["latency"]["p99_ms"]
        assert _finite(r["throughput_img_s"]) and _finite(r["speedup_vs_torch"]) and r["peak_rss_mb"] > 0
        assert STAGES & set(r["stages_ms"]) >= {"canny", "edge", "inpaint"}
        assert all(_finite(v) for v in r["stages_ms"].values())
        assert _finite(r["gflop_per_image"]) and _finite(r["achieved_gflops"])
        # identical outputs have an infinite PSNR, written as null (strict JSON) next to a max diff of 0
        assert r["max_abs_diff"] is not None and (r["psnr_db"] is not None or r["max_abs_diff"] == 0)
    torch_row = next(r for r in rows if r["backend"] == "torch")
    # the baseline against itself: identical, so its infinite PSNR is written as null (strict JSON)
    assert torch_row["speedup_vs_torch"] == pytest.approx(1.0) and torch_row["psnr_db"] is None
    ort = next(r for r in rows if r["backend"] == "onnxruntime" and r["precision"] == "fp32")
    assert ort["max_abs_diff"] == 0 or ort["psnr_db"] > 40  # ORT fp32 reproduces the eager baseline
    skipped = {(s["backend"], s["precision"]) for s in report["skipped"]}
    assert ("onnxruntime", "fp16") in skipped and ("tensorrt", "fp32") in skipped
    assert (out / "r.md").read_text().count("| onnxruntime |") == 4
    assert (out / "r.png").stat().st_size > 1000
