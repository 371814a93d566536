"""The environment header every benchmark report carries: machine, versions, commit, date."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # not installed, or broken: the report says so
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent.parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _gpu() -> dict | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.stdout.strip().splitlines()[0].split(",")
    return {"name": first[0].strip(), "driver": first[1].strip(), "compute_capability": first[2].strip(),
            "memory": first[3].strip()}


def environment() -> dict:
    """A JSON-ready description of where and with what a benchmark ran."""
    from ec_runtime import __version__ as toolkit_version

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "toolkit_version": toolkit_version,
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": _gpu(),
        "versions": {name: _version(name) for name in
                     ("numpy", "onnxruntime", "onnx", "torch", "tensorrt", "tensorrt_rtx_bindings", "cv2", "skimage")},
    }


def environment_markdown(env: dict) -> str:
    """The header as a short Markdown list."""
    gpu = env["gpu"]
    gpu_text = f"{gpu['name']} (driver {gpu['driver']}, cc {gpu['compute_capability']})" if gpu else "none"
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    return "\n".join([
        f"- date: {env['date']}, commit {env['commit'] or 'unknown'}, ec-deploy {env['toolkit_version']}",
        f"- CPU: {env['cpu']} ({env['cpu_cores']} cores), {env['platform']}, Python {env['python']}",
        f"- GPU: {gpu_text}",
        f"- versions: {versions}",
    ])
