"""GPU acceptance checks that run the project's own tools: the ``gpu`` tests (pytest) and ``ec-bench``.

Part of ``scripts/gpu_check.py``. ec-bench runs in this process (as its console script would), with
CUDA graphs off and on, on the engines the ``engines`` check built.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from gpu_check_cuda import Context, Skip, require
from gpu_check_trt import ROOT, require_tensorrt, precisions_of, run_cli

# ec-bench settings: (sizes, batches, timed iterations, warm-up calls), full and with --quick.
FULL_BENCH = ("256,512", "1,4", "20", "3")
QUICK_BENCH = ("256", "1", "5", "3")


def _run(cmd: list[str], ctx: Context, what: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    try:
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=ctx.timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} ran past --timeout {ctx.timeout} s") from None


def _tail(proc: subprocess.CompletedProcess, lines: int = 15) -> list[str]:
    text = (proc.stdout + proc.stderr).strip().splitlines()[-lines:]
    return ["```", *text, "```"]


# ------------------------------------------------------------------ gpu tests
def check_gpu_tests(ctx: Context) -> dict:
    require("pytest", "pytest is not installed (pip install -r requirements-dev.txt)")
    xml = ctx.out / "gpu-tests.xml"
    proc = _run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
                 "--continue-on-collection-errors", f"--junitxml={xml}", "tests"], ctx, "pytest -m gpu")
    if proc.returncode not in (0, 1, 5) or not xml.is_file():
        raise RuntimeError(f"pytest exited {proc.returncode}: {(proc.stdout + proc.stderr).strip().splitlines()[-1:]}")
    outcome, missing = junit_outcomes(xml)
    ran = [n for n, o in outcome.items() if o in ("passed", "failed")]
    failed = [n for n, o in outcome.items() if o == "failed"]
    details = ["| test | outcome |", "|---|---|"] + [f"| {n} | {o} |" for n, o in outcome.items()]
    if missing:
        details += ["", "Test modules not collected for want of a package (not counted as failures): "
                    + "; ".join(f"{n} ({m})" for n, m in missing.items())]
    if failed:
        details += _tail(proc, 40)
    if not ran:
        why = sorted({o[len("skipped: "):] for o in outcome.values() if o.startswith("skipped: ")})
        why += [f"not collected: {m}" for m in sorted(set(missing.values()))]
        raise Skip("no gpu test ran here: " + ("; ".join(why) or "none selected"))
    return {"figures": {"gpu tests": len(outcome), "passed": len(ran) - len(failed), "failed": len(failed),
                        "skipped": len(outcome) - len(ran), "modules not collected": len(missing)},
            "details": details, "failures": [f"{len(failed)} gpu test(s) failed: {', '.join(failed)}"] if failed else []}


def junit_outcomes(xml: Path) -> tuple[dict[str, str], dict[str, str]]:
    """({test: "passed" | "failed" | "skipped: why"}, {module not collected: the missing package}) from pytest's XML.

    A module that fails to import because a package is missing (``ModuleNotFoundError``) goes into the
    second dict: on a machine set up with only some packages that is a skip, not a failure.
    """
    outcome, missing = {}, {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = "::".join(p for p in (case.get("classname"), case.get("name")) if p)
        error = case.find("error")
        if error is not None and error.get("message") == "collection failure":
            found = re.search(r"No module named '([^']+)'", error.text or "")
            if found:
                missing[name] = f"no module {found.group(1)}"
                continue
        skipped = case.find("skipped")
        outcome[name] = ("failed" if case.find("failure") is not None or error is not None else
                         f"skipped: {skipped.get('message')}" if skipped is not None else "passed")
    return outcome, missing


# ------------------------------------------------------------------ ec-bench
def check_bench(ctx: Context) -> dict:
    require_tensorrt()
    require("pycuda", "pycuda is not installed: ec-bench's TensorRT rows need it (pip install pycuda)")
    from benchmarks.cli import main as ec_bench

    sizes, batches, iters, warmup = QUICK_BENCH if ctx.quick else FULL_BENCH
    runs, details, failures = {}, [], []
    for name, export_dir in ctx.state["exports"].items():
        precisions = ",".join(precisions_of(export_dir, ctx.quick))
        for graph in (False, True):
            out = ctx.out / "bench" / f"{name}-graph-{'on' if graph else 'off'}"
            args = [str(export_dir), "--backends", "tensorrt" if graph else "onnxruntime,tensorrt",
                    "--precisions", precisions, "--sizes", sizes, "--batch", batches, "--iters", iters,
                    "--warmup", warmup, "-q", "--json", str(out / "report.json"), "--markdown", str(out / "report.md"),
                    "--plot", str(out / "report.png")] + (["--cuda-graph"] if graph else [])
            ok, printed = run_cli(ec_bench, args)
            if not ok:
                failures.append(f"ec-bench on {name} (graphs {'on' if graph else 'off'}) failed: "
                                f"{printed.strip().splitlines()[-1:]}")
                details += ["```", *printed.strip().splitlines()[-15:], "```"]
                continue
            report = json.loads((out / "report.json").read_text())
            runs[(name, graph)] = report
            for s in report["skipped"]:
                if s["backend"] == "tensorrt":
                    failures.append(f"{name}: ec-bench skipped tensorrt {s['precision']}: {s['reason']}")
    rows = bench_table(runs)
    details = ["| export | precision | size | batch | ORT ms | TRT ms | TRT + graph ms | graph speed-up | TRT img/s |",
               "|---|---|---|---|---|---|---|---|---|"] + rows + details
    return {"figures": {"rows": len(rows)}, "details": details, "failures": failures}


def bench_table(runs: dict) -> list[str]:
    """Markdown rows joining ec-bench reports keyed by (export name, cuda_graph)."""
    cells: dict[tuple, dict] = {}
    for (name, graph), report in runs.items():
        for r in report["rows"]:
            key = (name, r["precision"], r["size"], r["batch"])
            column = "ort" if r["backend"] == "onnxruntime" else ("graph" if graph else "trt")
            cells.setdefault(key, {})[column] = r
    order = {"fp32": 0, "fp16": 1, "int8": 2}
    lines = []
    for key in sorted(cells, key=lambda k: (k[0], order.get(k[1], 3), k[2], k[3])):
        c = cells[key]

        def ms(col):
            return f"{c[col]['latency']['mean_ms']:.2f}" if col in c else "-"

        speedup = (f"{c['trt']['latency']['mean_ms'] / c['graph']['latency']['mean_ms']:.2f}x"
                   if "trt" in c and "graph" in c else "-")
        best = min((c[k] for k in ("trt", "graph") if k in c), key=lambda r: r["latency"]["mean_ms"], default=None)
        img_s = f"{best['throughput_img_s']:.1f}" if best else "-"
        lines.append(f"| {key[0]} | {key[1]} | {key[2]}² | {key[3]} | {ms('ort')} | {ms('trt')} | {ms('graph')} | "
                     f"{speedup} | {img_s} |")
    return lines
