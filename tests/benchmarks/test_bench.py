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


def _reject(constant):
    raise ValueError(f"non-standard JSON constant {constant}")


def test_bench_report_has_every_field(tiny_export, tmp_path):
    out = tmp_path / "r"
    result = CliRunner().invoke(main, [str(tiny_export), "--sizes", "32", "--batch", "1,2", "--iters", "3",
                                       "--warmup", "1", "--threads", "1", "--json", str(out / "r.json"),
                                       "--markdown", str(out / "r.md"), "--plot", str(out / "r.png"), "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "r.json").read_text(), parse_constant=_reject)  # strict JSON: no NaN/Infinity
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
        assert r["max_abs_diff"] is not None
        assert r["psnr_db"] is None if r["max_abs_diff"] == 0 else _finite(r["psnr_db"])
    torch_row = next(r for r in rows if r["backend"] == "torch")
    assert torch_row["speedup_vs_torch"] == pytest.approx(1.0) and torch_row["max_abs_diff"] == 0
    ort = next(r for r in rows if r["backend"] == "onnxruntime" and r["precision"] == "fp32")
    assert ort["psnr_db"] is None or ort["psnr_db"] > 40  # ORT fp32 reproduces the eager baseline
    skipped = {(s["backend"], s["precision"]) for s in report["skipped"]}
    assert ("onnxruntime", "fp16") in skipped and ("tensorrt", "fp32") in skipped
    markdown = (out / "r.md").read_text()
    assert markdown.count("| onnxruntime |") == 4
    assert markdown.count("| exact |") >= 2 and "| inf |" not in markdown  # the baseline's PSNR is "exact"
    assert (out / "r.png").stat().st_size > 1000


def test_two_models_in_one_interleaved_run(tiny_export, tmp_path):
    """--with: every model's rows in one loop, each against its own torch baseline; int8 runs the U8S8 files."""
    out = tmp_path / "r"
    result = CliRunner().invoke(main, [str(tiny_export), "--with", str(tiny_export), "--sizes", "32", "--batch", "1",
                                       "--iters", "2", "--precisions", "fp32,int8", "--threads", "1",
                                       "--json", str(out / "r.json"), "--markdown", str(out / "r.md"),
                                       "--plot", str(out / "r.png"), "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "r.json").read_text(), parse_constant=_reject)
    assert len(report["models"]) == 2 and report["model"] == report["models"][0]
    labels = [m["label"] for m in report["models"]]
    assert len(set(labels)) == 2
    assert {(r["model"], r["backend"], r["precision"]) for r in report["rows"]} == {
        (m, b, p) for m in labels for b, p in [("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]}
    for r in report["rows"]:
        assert r["speedup_vs_torch"] > 0
        assert r.get("files") == ("int8_cpu" if r["precision"] == "int8" else None)
    markdown = (out / "r.md").read_text()
    assert markdown.count("| int8 U8S8 |") == 2 and markdown.count("- model:") == 2
