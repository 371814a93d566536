"""Start the real ``ec-serve`` (tritonserver from .venv-triton) on free loopback ports, for the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ec_runtime.serve import free_ports

ROOT = Path(__file__).resolve().parents[2]
TRITON_VENV = Path(os.environ.get("EC_TRITON_VENV", ROOT / ".venv-triton"))
API_KEY = "serving-tests-key"


def triton_python() -> Path:
    """The server venv's python; the serving tests fail (never skip) when it is missing."""
    python = TRITON_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} not found: the serving tests need the Triton server venv. "
                    "Run `bash scripts/setup_triton_venv.sh` (scripts/test.sh does).")
    return python


class Served:
    """One ``ec-serve`` process; ``start()`` returns once it printed its ready line."""

    def __init__(self, repo: Path, ports: list[int] | None = None, api_key: str | None = API_KEY) -> None:
        self.repo, self.api_key = repo, api_key
        self.http_port, self.grpc_port, self.metrics_port = ports or free_ports(3)
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.grpc = f"grpc://127.0.0.1:{self.grpc_port}"
        self.metrics = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.process: subprocess.Popen | None = None
        self.stdout: list[str] = []
        self.stderr: list[str] = []

    def command(self) -> list[str]:
        cmd = [str(triton_python()), "-m", "ec_runtime.serve_cli", str(self.repo), "--http-port", str(self.http_port),
               "--grpc-port", str(self.grpc_port), "--metrics-port", str(self.metrics_port), "--exit-timeout", "5"]
        return cmd + (["--api-key", self.api_key] if self.api_key else [])

    def start(self, timeout: float = 120) -> "Served":
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's ec_runtime, in ec-serve and in the models
        self.stdout, self.stderr = [], []
        from ec_runtime.serve import die_with_parent  # a killed test run takes its servers with it

        self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env, cwd=ROOT, preexec_fn=die_with_parent)
        threading.Thread(target=self._drain, args=(self.process.stderr, self.stderr), daemon=True).start()
        ready = threading.Event()
        threading.Thread(target=self._drain, args=(self.process.stdout, self.stdout, ready), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"ec-serve did not become ready: {''.join(self.stdout + self.stderr)[-3000:]}")
        return self

    @staticmethod
    def _drain(stream, into: list[str], ready: threading.Event | None = None) -> None:
        for line in stream:
            into.append(line)
            if ready is not None and line.startswith("ready:"):
                ready.set()

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Signal ec-serve and wait; returns its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
