"""GPU acceptance in one command: what the CPU test suite cannot prove, checked on a CUDA machine.

    bash scripts/gpu_check.sh [--out DIR] [--quick] [--only NAMES] [--skip NAMES] [--list]

Runs the checks below in order and writes ``DIR/gpu-check.md`` and ``DIR/gpu-check.json`` (rewritten
after every check, so a crash still leaves a report). A check that cannot run here is *skipped* and
the report says why (no CUDA device, TensorRT not installed, pycuda missing, ...). The exit code is 0
when nothing failed, 1 when a check failed and 2 for a usage error.

The standard library is all this file needs at import time: each check imports what it uses and is
skipped, with the reason, when that is missing. Machines with only torch (CUDA), cuda-bindings, cupy and
a CPU onnxruntime still run the torch Canny, CUDA graph and AMP checks.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import gpu_check_cuda  # noqa: E402
import gpu_check_runs  # noqa: E402
import gpu_check_trt  # noqa: E402
from gpu_check_cuda import Skip  # noqa: E402

REPORT_MD, REPORT_JSON = "gpu-check.md", "gpu-check.json"
OWN_PREFIXES = ("export-", "bench")  # what a previous run left in its report directory and a new run replaces


class UsageError(Exception):
    """A bad option: reported in one line, exit code 2."""


@dataclass
class Check:
    name: str
    title: str
    run: Callable[["gpu_check_cuda.Context"], dict]
    needs: tuple[str, ...] = ()


CHECKS = [
    Check("environment", "Python, packages, CUDA driver and devices", gpu_check_cuda.check_environment),
    Check("cuda_device", "a CUDA device is usable", gpu_check_cuda.check_cuda_device),
    Check("torch_cuda_canny", "Canny as torch ops: CUDA agrees with the CPU", gpu_check_cuda.check_torch_canny,
          ("cuda_device",)),
    Check("cuda_graph", "CUDA graph capture and replay through the CUDA runtime API", gpu_check_cuda.check_cuda_graph,
          ("cuda_device",)),
    Check("amp_train_step", "training steps with AMP (fp16, bf16) on the GPU", gpu_check_cuda.check_amp_train_step,
          ("cuda_device",)),
    Check("gpu_tests", "the test suite's `gpu` tests", gpu_check_runs.check_gpu_tests, ("cuda_device",)),
    Check("export", "export the demo model and a paper-size random pair (FP32/FP16/INT8)", gpu_check_trt.check_export,
          ("cuda_device",)),
    Check("engines", "TensorRT engines for every ONNX file, with `ec-export engine`", gpu_check_trt.check_engines,
          ("export",)),
    Check("engines_vs_onnxruntime", "each engine against ONNX Runtime (Polygraphy comparator)",
          gpu_check_trt.check_engines_vs_onnxruntime, ("engines",)),
    Check("inpainter_tensorrt", "Inpainter on TensorRT against ONNX Runtime (batches, odd sizes, crops, graphs)",
          gpu_check_trt.check_inpainter, ("engines",)),
    Check("bench", "ec-bench TensorRT rows, CUDA graphs off and on", gpu_check_runs.check_bench, ("engines",)),
]
NAMES = [c.name for c in CHECKS]


def _strict(obj):
    """JSON-ready copy: NaN and infinities become None (the report is strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary(results: list[dict]) -> dict:
    counts = {s: sum(r["status"] == s for r in results) for s in ("pass", "fail", "skip")}
    return {"passed": counts["pass"], "failed": counts["fail"], "skipped": counts["skip"]}


def write_report(out: Path, command: str, started: str, results: list[dict], env: dict) -> None:
    """Write ``gpu-check.json`` and ``gpu-check.md`` (atomically, so a crash never leaves half a file)."""
    counts = summary(results)
    data = {"command": command, "started": started, "summary": counts, "environment": env, "checks": results}
    lines = ["# GPU acceptance check", "", f"- command: `{command}`", f"- started: {started}"]
    for key in ("host", "python", "device", "cuda", "versions"):
        if env.get(key):
            value = env[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items() if v)
            if value:
                lines.append(f"- {key}: {value}")
    lines += ["", f"**{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped** "
              f"(of {len(results)} checks run so far)", "",
              "| # | check | status | seconds | result |", "|---|---|---|---|---|"]
    for i, r in enumerate(results, 1):
        what = r.get("reason") or r.get("error") or ", ".join(f"{k} {v}" for k, v in r.get("figures", {}).items())
        lines.append(f"| {i} | {r['name']} | {r['status'].upper()} | {r['seconds']:.1f} | {_cell(what)} |")
    for r in results:
        if r.get("details") or r.get("error"):
            lines += ["", f"## {r['name']}: {r['title']}", ""]
            if r.get("error"):
                lines += ["```", r.get("traceback") or r["error"], "```", ""]
            lines += r.get("details", [])
    skipped = [r for r in results if r["status"] == "skip"]
    if skipped:
        lines += ["", "## Skipped, and why", ""] + [f"- **{r['name']}**: {r['reason']}" for r in skipped]
    out.mkdir(parents=True, exist_ok=True)
    for name, text in ((REPORT_JSON, json.dumps(_strict(data), indent=2, allow_nan=False) + "\n"),
                       (REPORT_MD, "\n".join(lines) + "\n")):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)


def run_check(check: Check, ctx, done: dict[str, dict]) -> dict:
    """Run one check; returns its result entry (status pass/fail/skip, reason, figures, details)."""
    result = {"name": check.name, "title": check.title, "status": "skip", "reason": None, "figures": {},
              "details": [], "seconds": 0.0}
    blocked = [n for n in check.needs if done.get(n, {}).get("status") != "pass"]
    if blocked:
        need = done.get(blocked[0])
        if need is None:
            result["reason"] = f"needs {blocked[0]}, which was not run (--only/--skip)"
        elif need["status"] == "skip" and need["reason"].startswith("needs "):
            result["reason"] = need["reason"]  # the root cause, not a chain of prerequisites
        else:
            how = "failed" if need["status"] == "fail" else "was skipped"
            result["reason"] = f"needs {blocked[0]}, which {how}: {need.get('reason') or need.get('error')}"
        return result
    start = time.perf_counter()
    try:
        out = check.run(ctx) or {}
        result.update(status="pass", figures=out.get("figures", {}), details=out.get("details", []))
        if out.get("failures"):
            result.update(status="fail", error="; ".join(out["failures"]))
    except Skip as exc:
        result.update(status="skip", reason=str(exc))
    except Exception as exc:  # a check that breaks is a failed check, with its traceback in the report
        result.update(status="fail", error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                      traceback=traceback.format_exc(limit=8))
    result["seconds"] = time.perf_counter() - start
    return result


def _names(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    bad = [n for n in names if n not in NAMES]
    if bad:
        raise UsageError(f"unknown check {', '.join(bad)}; choose from {', '.join(NAMES)}")
    return names


def _prepare_out(out: Path) -> None:
    """Refuse a non-empty directory this script did not write; clear what an earlier run of it left."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / REPORT_JSON).is_file():
            raise UsageError(f"--out {out} is not empty and holds no {REPORT_JSON} (it was not written by this "
                             "script); choose a new directory")
        for path in out.iterdir():
            if path.is_dir() and path.name.startswith(OWN_PREFIXES):
                shutil.rmtree(path)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="gpu_check.sh", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0],
        epilog="checks, in order:\n" + "\n".join(f"  {c.name:24s} {c.title}" for c in CHECKS) +
               "\n\nexamples:\n  bash scripts/gpu_check.sh                      # everything, report in gpu-check/\n"
               "  bash scripts/gpu_check.sh --quick              # demo model only, 256², fewer iterations\n"
               "  bash scripts/gpu_check.sh --export export/     # your export (e.g. on a Jetson, without torch)\n"
               "  bash scripts/gpu_check.sh --only cuda_device,cuda_graph --out /tmp/g")
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), metavar="DIR", help="report directory (default: gpu-check)")
    parser.add_argument("--quick", action="store_true",
                        help="demo model only, FP32+FP16, 256² and batch 1 in ec-bench, fewer iterations")
    parser.add_argument("--export", dest="exports", type=Path, action="append", default=[], metavar="DIR",
                        help="use this export directory (copied into the report directory) instead of exporting "
                             "the demo and paper-size models; repeatable. Needs no torch (e.g. on a Jetson)")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated checks to run (their prerequisites must be listed too)")
    parser.add_argument("--skip", metavar="NAMES", help="comma-separated checks to leave out")
    parser.add_argument("--timeout", type=int, default=3600, metavar="SECONDS",
                        help="seconds allowed to the pytest run of the gpu tests (default 3600)")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(f"{c.name:24s} {c.title}" + (f"  (needs {', '.join(c.needs)})" if c.needs else "")
                        for c in CHECKS))
        return 0
    try:
        missing = [str(d) for d in args.exports if not (d / "export.json").is_file()]
        if missing:
            raise UsageError(f"--export {missing[0]} is not an export directory (no export.json)")
        only, skip = _names(args.only), _names(args.skip)
        _prepare_out(args.out)
    except UsageError as exc:
        print(f"gpu_check.sh: error: {exc}", file=sys.stderr)
        return 2
    chosen = [c for c in CHECKS if (not only or c.name in only) and c.name not in skip]
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    command = "bash scripts/gpu_check.sh " + " ".join(sys.argv[1:] if argv is None else argv)
    ctx = gpu_check_cuda.Context(out=args.out, quick=args.quick, timeout=args.timeout, log=print,
                                 exports_given=args.exports)
    done: dict[str, dict] = {}
    results: list[dict] = []
    for i, check in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {check.name}: {check.title}", flush=True)
        try:
            result = run_check(check, ctx, done)
        except KeyboardInterrupt:
            print(f"interrupted during {check.name}; the report of the checks before it: {args.out / REPORT_MD}",
                  file=sys.stderr)
            return 130
        done[check.name] = result
        results.append(result)
        note = result.get("reason") or result.get("error") or ""
        print(f"    {result['status'].upper()} ({result['seconds']:.1f} s){': ' + note if note else ''}", flush=True)
        write_report(args.out, command, started, results, ctx.env)
    counts = summary(results)
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    print(f"report: {args.out / REPORT_MD} and {args.out / REPORT_JSON}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
