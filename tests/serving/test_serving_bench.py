"""benchmarks/serving.py on the session server: one small interleaved run, its comparison and report."""

from __future__ import annotations

import json

from benchmarks.serving import compare, markdown, measure
from ec_runtime import Inpainter


def test_measure_compare_and_report(server, local):
    with Inpainter.from_server(server.grpc) as remote:
        rows = measure(local, remote, server.metrics, sizes=[64], concurrencies=[1, 4], requests=4, rounds=2,
                       progress=lambda _: None)
    assert [(r["concurrency"], r["mode"]) for r in rows] == [(1, "in-process"), (1, "triton"),
                                                            (4, "in-process"), (4, "triton")]
    assert all(r["requests"] >= 4 and r["p50_ms"] > 0 and r["throughput_img_s"] > 0 for r in rows)
    served = [r for r in rows if r["mode"] == "triton"]
    assert all(r["avg_batch"] >= 1 and 0 < r["server"]["ensemble_request_ms"] <= r["mean_ms"] for r in served)
    assert all(r["server"][s]["compute_infer"] > 0 for r in served for s in ("canny", "edge", "inpaint"))
    comparison = compare(rows)
    assert [c["concurrency"] for c in comparison] == [1, 4] and all(c["p50_ratio"] > 0 for c in comparison)
    result = {"environment": {"date": "d", "commit": None, "toolkit_version": "0", "cpu": "c", "cpu_cores": 2,
                              "platform": "p", "python": "3", "gpu": None, "versions": {}},
              "export": "e", "protocol": "grpc", "server": "s", "rounds": 2, "rows": rows, "comparison": comparison,
              "load_average": {"start": [1.0, 2.0, 3.0], "end": [1.0, 1.0, 1.0]}}
    json.dumps(result, allow_nan=False)
    text = markdown(result)
    assert "| 64² | 4 | triton |" in text and "1.0/2.0/3.0" in text and "time goes" in text
