"""Serving benchmark: a Triton server (python backend, started with ec-serve) vs the in-process Inpainter.

    python -m benchmarks.serving [EXPORT_DIR] [--server URL] [--sizes 256,512] [--concurrency 1,4,8]

Both modes run the same export (default: the demo model that ships with ec_runtime) on the same
machine, interleaved in one run: for every size and concurrency, a chunk of in-process requests,
then a chunk through the server, repeated for ``--rounds`` rounds in alternating order, so
background load hits both alike. ``concurrency`` threads send requests back to back; each request
is one image through ``Inpainter.inpaint`` (client-side padding and gray included in both modes).
Reported per mode: p50/p90/p99/mean latency, throughput, and for the server the average batch the
dynamic batcher formed (Triton's ``nv_inference_count / nv_inference_exec_count`` of the edge model).

Without ``--server`` it writes a python-backend repository of the export into a temporary folder
and starts ``ec-serve`` from ``--triton-venv`` (default ``.venv-triton``) on free loopback ports.
Results go to ``--json`` / ``--markdown`` (default ``benchmarks/results/serving.{json,md}``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.environment import environment, environment_markdown
from benchmarks.stats import latency_stats

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "ec_runtime" / "models" / "demo"


def sample(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A photo (scikit-image's astronaut, resized) and a free-form hole over ~15% of it."""
    import cv2
    from skimage import data

    image = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    while mask.mean() < 0.15:
        pts = rng.integers(size // 8, 7 * size // 8, (4, 2)).astype(np.int32)
        cv2.polylines(mask, [pts], False, 1, thickness=max(4, size // 24))
    return image, mask.astype(bool)


class LocalServer:
    """ec-serve in the Triton venv on a python-backend repository of ``export``, on free loopback ports."""

    def __init__(self, export: Path, venv: Path, workdir: Path, max_batch: int, queue_delay_us: int,
                 threads: int = 0):
        from ec_export.triton import write_repository

        python = venv / "bin" / "python"
        if not python.exists():
            raise SystemExit(f"{python} not found: run `bash scripts/setup_triton_venv.sh` or pass --server URL")
        self.repo = workdir / "repo"
        write_repository(export, self.repo, backend="python", max_batch=max_batch, queue_delay_us=queue_delay_us,
                         threads=threads)
        from ec_runtime.serve import free_ports

        http, grpc, metrics = free_ports(3)
        self.urls = {"http": f"http://127.0.0.1:{http}", "grpc": f"grpc://127.0.0.1:{grpc}"}
        self.metrics = f"http://127.0.0.1:{metrics}/metrics"
        cmd = [str(python), "-m", "ec_runtime.serve_cli", str(self.repo), "--http-port", str(http),
               "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
        from ec_runtime.serve import die_with_parent

        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=die_with_parent)
        ready = threading.Event()

        def drain():
            for line in self.process.stdout:
                if line.startswith("ready:"):
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(300):
            self.stop()
            raise SystemExit("ec-serve did not become ready within 300 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


STAT_MODELS = ("edgeconnect", "canny", "edge", "inpaint")
STAT_METRICS = ("request_success", "count", "exec_count", "request_duration_us", "queue_duration_us",
                "compute_input_duration_us", "compute_infer_duration_us", "compute_output_duration_us")


def server_counters(metrics_url: str | None) -> dict[tuple[str, str], float] | None:
    """Triton's cumulative per-model counters ``{(metric, model): value}`` (``nv_inference_`` dropped)."""
    if not metrics_url:
        return None
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    return {(m, model): float(v) for m, model, v in
            re.findall(r'^nv_inference_(\w+)\{model="(\w+)",version="1"\} (\S+)$', text, re.M)
            if m in STAT_METRICS and model in STAT_MODELS}


def settled_counters(metrics_url: str | None, before: dict | None, requests: int, wait_s: float = 10.0):
    """The counters once the ensemble's success count has grown by ``requests``: Triton updates its
    statistics just after sending a response, so a scrape right after the last answer can lag."""
    after = server_counters(metrics_url)
    if after is None or before is None:
        return after
    key = ("request_success", "edgeconnect")
    deadline = time.monotonic() + wait_s
    while after.get(key, 0) - before.get(key, 0) < requests and time.monotonic() < deadline:
        time.sleep(0.05)
        after = server_counters(metrics_url)
    return after


def breakdown(delta: dict[tuple[str, str], float]) -> dict:
    """Per-request server times (ms) from counter deltas: the ensemble's request duration, and for each
    stage its queueing, its compute (the python backend's execute: ONNX Runtime and the stub's copies)
    and its input/output copies, plus the average batch the dynamic batcher formed."""
    out = {}
    requests = delta.get(("request_success", "edgeconnect"), 0)
    if requests:
        out["ensemble_request_ms"] = delta.get(("request_duration_us", "edgeconnect"), 0) / requests / 1e3
    for stage in ("canny", "edge", "inpaint"):
        n = delta.get(("request_success", stage), 0)
        if not n:
            continue
        ms = {k: delta.get((f"{k}_duration_us", stage), 0) / n / 1e3 for k in ("queue", "compute_infer")}
        ms["copies"] = sum(delta.get((f"compute_{k}_duration_us", stage), 0) for k in ("input", "output")) / n / 1e3
        execs = delta.get(("exec_count", stage), 0)
        ms["avg_batch"] = delta.get(("count", stage), 0) / execs if execs else None
        out[stage] = ms
    return out


def run_chunk(painter, image, mask, concurrency: int, requests: int) -> tuple[list[float], float]:
    """``requests`` inpaint calls from ``concurrency`` threads; (latencies in s, wall time in s)."""
    def one(_):
        start = time.perf_counter()
        painter.inpaint(image, mask)
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(requests)))
    return latencies, time.perf_counter() - start


def measure(local, remote, metrics_url, sizes, concurrencies, requests, rounds, progress=print) -> list[dict]:
    rows = []
    for size in sizes:
        image, mask = sample(size)
        for painter in (local, remote):  # warm-up: sessions, connections, the server's first shapes
            for _ in range(2):
                painter.inpaint(image, mask)
        for conc in concurrencies:
            n = max(requests, 4 * conc)
            per_round = max(conc, n // rounds)
            acc = {m: {"lat": [], "wall": 0.0, "count": 0, "delta": {}} for m in ("in-process", "triton")}
            for r in range(rounds):
                order = [("in-process", local), ("triton", remote)]
                for mode, painter in (order if r % 2 == 0 else order[::-1]):
                    before = server_counters(metrics_url) if mode == "triton" else None
                    lat, wall = run_chunk(painter, image, mask, conc, per_round)
                    after = settled_counters(metrics_url, before, len(lat)) if mode == "triton" else None
                    a = acc[mode]
                    a["lat"] += lat
                    a["wall"] += wall
                    a["count"] += len(lat)
                    if before is not None and after is not None:
                        for key, value in after.items():
                            a["delta"][key] = a["delta"].get(key, 0.0) + value - before.get(key, 0.0)
            for mode, a in acc.items():
                row = {"size": size, "concurrency": conc, "mode": mode, "requests": a["count"],
                       **latency_stats(a["lat"]), "throughput_img_s": a["count"] / a["wall"]}
                if mode == "triton" and a["delta"]:
                    row["server"] = breakdown(a["delta"])
                    row["avg_batch"] = row["server"].get("edge", {}).get("avg_batch")
                rows.append(row)
                progress(f"{size}² conc {conc} {mode:10s} p50 {row['p50_ms']:8.1f} ms  "
                         f"{row['throughput_img_s']:.2f} img/s" + (f"  batch {row['avg_batch']:.2f}"
                                                                 if "avg_batch" in row else ""))
    return rows


def compare(rows: list[dict]) -> list[dict]:
    """Side-by-side rows: server vs in-process at the same size and concurrency, and vs in-process conc 1."""
    def find(size, conc, mode):
        return next(r for r in rows if r["size"] == size and r["concurrency"] == conc and r["mode"] == mode)

    out = []
    for r in rows:
        if r["mode"] != "triton":
            continue
        local = find(r["size"], r["concurrency"], "in-process")
        base = next((x for x in rows if x["size"] == r["size"] and x["mode"] == "in-process"
                     and x["concurrency"] == 1), None)
        out.append({"size": r["size"], "concurrency": r["concurrency"],
                    "p50_ratio": r["p50_ms"] / local["p50_ms"],
                    "throughput_ratio": r["throughput_img_s"] / local["throughput_img_s"],
                    "throughput_vs_inprocess_batch1": (r["throughput_img_s"] / base["throughput_img_s"]) if base else None,
                    "avg_batch": r.get("avg_batch")})
    return out


def _load(result: dict, when: str) -> str:
    return "/".join(f"{x:.1f}" for x in result.get("load_average", {}).get(when, [])) or "unknown"


def markdown(result: dict) -> str:
    lines = ["# Serving benchmark: Triton (python backend) vs in-process", "",
             environment_markdown(result["environment"]), "",
             f"Export: `{result['export']}`; protocol {result['protocol']}; server: {result['server']}; "
             f"in-process ONNX Runtime threads: {result.get('local_threads', 'default')}; "
             f"{result['rounds']} interleaved rounds. Latency is per request at the client (ms); "
             "throughput is requests / wall time. Machine load average (1/5/15 min) at the start "
             f"{_load(result, 'start')}, at the end {_load(result, 'end')}: other work shared the cores, "
             "so compare the two modes within a row pair, not with other reports.", "",
             "| size | concurrency | mode | requests | p50 | p90 | p99 | mean | img/s | avg batch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        batch = f"{r['avg_batch']:.2f}" if r.get("avg_batch") else ""
        lines.append(f"| {r['size']}² | {r['concurrency']} | {r['mode']} | {r['requests']} | {r['p50_ms']:.0f} | "
                     f"{r['p90_ms']:.0f} | {r['p99_ms']:.0f} | {r['mean_ms']:.0f} | {r['throughput_img_s']:.2f} | {batch} |")
    lines += ["", "| size | concurrency | server p50 / in-process p50 | server img/s / in-process img/s | "
              "server img/s / in-process conc-1 img/s |", "|---|---|---|---|---|"]
    for c in result["comparison"]:
        vs1 = f"{c['throughput_vs_inprocess_batch1']:.2f}×" if c["throughput_vs_inprocess_batch1"] else ""
        lines.append(f"| {c['size']}² | {c['concurrency']} | {c['p50_ratio']:.2f}× | {c['throughput_ratio']:.2f}× | {vs1} |")
    served = [r for r in result["rows"] if r.get("server")]
    if served:
        lines += ["", "Where a served request's time goes (mean ms per request, from Triton's metrics): the client's "
                  "latency, the ensemble's time inside the server, and per stage the time queued and in "
                  "`execute` (ONNX Runtime plus the python backend's copies), with the average batch.", "",
                  "| size | concurrency | client mean | in server | canny queue / execute | edge queue / execute | "
                  "inpaint queue / execute | avg batch (edge) |", "|---|---|---|---|---|---|---|---|"]
        for r in served:
            sv = r["server"]

            def cell(stage):
                st = sv.get(stage)
                return f"{st['queue']:.0f} / {st['compute_infer']:.0f}" if st else ""

            batch = f"{r['avg_batch']:.2f}" if r.get("avg_batch") else ""
            lines.append(f"| {r['size']}² | {r['concurrency']} | {r['mean_ms']:.0f} | "
                         f"{sv.get('ensemble_request_ms', 0):.0f} | {cell('canny')} | {cell('edge')} | "
                         f"{cell('inpaint')} | {batch} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", nargs="?", default=str(DEMO), help="export directory (default: the demo model)")
    parser.add_argument("--server", default=None, help="use this running server instead of starting one")
    parser.add_argument("--metrics", default=None, help="its metrics URL (for batch sizes) with --server")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="grpc")
    parser.add_argument("--triton-venv", default=str(ROOT / ".venv-triton"))
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--requests", type=int, default=12, help="requests per mode, size and concurrency (min 4×conc)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--queue-delay-us", type=int, default=1000)
    parser.add_argument("--local-threads", type=int, default=0,
                        help="ONNX Runtime threads of the in-process Inpainter (0: its default, one per core)")
    parser.add_argument("--server-threads", type=int, default=0,
                        help="ONNX Runtime threads per stage on the server (0: its default, one per core)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "serving.json"))
    parser.add_argument("--markdown", default=str(ROOT / "benchmarks" / "results" / "serving.md"))
    args = parser.parse_args(argv)
    from ec_runtime import Inpainter

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out

    load_start = os.getloadavg()
    sizes = [int(s) for s in args.sizes.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="ec-serving-bench-") as tmp:
        server = None
        if args.server:
            url, metrics, how = args.server, args.metrics, f"given ({args.server})"
        else:
            server = LocalServer(Path(args.export), Path(args.triton_venv), Path(tmp), args.max_batch,
                                 args.queue_delay_us, args.server_threads)
            url, metrics = server.urls[args.protocol], server.metrics
            how = (f"ec-serve (nvidia-pytriton's tritonserver), python backend, 1 instance per stage, "
                   f"max_batch {args.max_batch}, queue delay {args.queue_delay_us} µs, "
                   f"ONNX Runtime threads per stage {args.server_threads or 'default'}")
        try:
            with Inpainter.from_dir(args.export, backend="onnxruntime", threads=args.local_threads or None) as local, \
                    Inpainter.from_server(url, protocol=args.protocol, timeout=600) as remote:
                rows = measure(local, remote, metrics, sizes, concurrencies, args.requests, args.rounds,
                               progress=lambda s: print(s, file=sys.stderr, flush=True))
        finally:
            if server is not None:
                server.stop()
    result = {"environment": environment(), "export": os.path.relpath(args.export, ROOT), "protocol": args.protocol,
              "server": how, "local_threads": args.local_threads or "default", "rounds": args.rounds, "rows": rows, "comparison": compare(rows),
              "load_average": {"start": list(load_start), "end": list(os.getloadavg())}}
    Path(args.json).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    Path(args.markdown).write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
