"""Launch a real ``tritonserver`` on a model repository and wait until it is ready (``ec-serve``).

We do not write a server: :class:`TritonServer` finds a Triton binary, starts it with the
repository, HTTP/gRPC/metrics endpoints on one address (loopback by default), waits for
``/v2/health/ready`` and stops it cleanly (SIGTERM, then SIGKILL after the exit timeout).

Where the binary comes from, in order: an explicit path, ``tritonserver`` on ``PATH``, then the
build that the ``nvidia-pytriton`` wheel bundles (``pip install ec-deploy[serve]`` in its own venv;
it runs the python backend on CPU-only machines). For that bundle the python backend's stub for
this interpreter's version is put beside the backend, and ``LD_LIBRARY_PATH`` starts with this
interpreter's own ``LIBDIR``: otherwise the stub can load another ``libpython`` of the same
version (Debian's), and models fail with ``'_thread.RLock' object has no attribute '_recursion_count'``.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ec_runtime.errors import EcRuntimeError, MissingDependencyError

ADMIN_APIS = ("model-repository", "shared-memory", "statistics", "trace", "logging")
API_KEY_HEADER = "ec-api-key"


@dataclass
class ServerBinary:
    """A ``tritonserver`` executable and what it needs to run."""

    path: Path
    source: str  # "explicit", "PATH" or "nvidia-pytriton"
    backends: Path | None = None  # the bundle's backend directory (copied into the workspace with its stub)
    stub: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


def _bundled() -> ServerBinary | None:
    """The tritonserver inside the nvidia-pytriton wheel of this interpreter, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not binary.is_file():
        return None
    if not stub.is_file():
        raise MissingDependencyError(f"nvidia-pytriton at {root.parent} has no python backend stub for Python {version}")
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(root.parent.parent / "nvidia_pytriton.libs")]
    old = os.environ.get("LD_LIBRARY_PATH")
    env = {"LD_LIBRARY_PATH": ":".join([p for p in libs if p] + ([old] if old else [])),
           # the stub's embedded interpreter finds this venv's site-packages through the python on PATH
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    return ServerBinary(binary, "nvidia-pytriton", root / "backends", stub, env)


def find_tritonserver(explicit: str | os.PathLike | None = None) -> ServerBinary:
    """``explicit``, else ``tritonserver`` on PATH, else nvidia-pytriton's bundled build."""
    if explicit is not None:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EcRuntimeError(f"--tritonserver {path}: not an executable file")
        return ServerBinary(path, "explicit")
    found = shutil.which("tritonserver")
    if found:
        return ServerBinary(Path(found), "PATH")
    bundled = _bundled()
    if bundled is not None:
        return bundled
    raise MissingDependencyError(
        "no tritonserver found: pass --tritonserver PATH, put it on PATH (the NGC Triton container has it), or "
        "install the build bundled with nvidia-pytriton in a venv of its own (it pins numpy<2): "
        "`bash scripts/setup_triton_venv.sh` makes .venv-triton; then run `.venv-triton/bin/ec-serve`")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, port: int) -> None:
    """Raise a clear error when ``host:port`` cannot be bound (in use, or not an address of this machine)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as exc:
            raise EcRuntimeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another port") from None


def free_ports(n: int = 1, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports that are free on ``host`` right now (all bound at once, then released)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def die_with_parent() -> None:
    """preexec_fn for child processes: the kernel sends them SIGTERM when their parent dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class TritonServer:
    """One ``tritonserver`` process on ``repo``; a context manager (start + wait ready, then stop)."""

    def __init__(self, repo: str | os.PathLike, *, host: str = "127.0.0.1", http_port: int = 8000,
                 grpc_port: int = 8001, metrics_port: int = 8002, binary: ServerBinary | None = None,
                 api_key: str | None = None, log_file: str | os.PathLike | None = None, verbose: bool = False,
                 exit_timeout: int = 10, extra_args: tuple[str, ...] = ()) -> None:
        self.repo = Path(repo)
        if not self.repo.is_dir():
            raise EcRuntimeError(f"model repository not found: {self.repo} (write one with `ec-export triton`)")
        if not any(self.repo.glob("*/config.pbtxt")):
            raise EcRuntimeError(f"{self.repo} holds no model (no */config.pbtxt); write one with `ec-export triton`")
        ports = {"--http-port": http_port, "--grpc-port": grpc_port, "--metrics-port": metrics_port}
        for name, port in ports.items():
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise EcRuntimeError(f"{name} must be a port number 1-65535, got {port!r}")
        if len(set(ports.values())) != 3:
            raise EcRuntimeError(f"HTTP, gRPC and metrics ports must differ, got {sorted(ports.values())}")
        if not is_loopback(host) and not api_key:
            raise EcRuntimeError(f"--host {host} opens the server beyond this machine: pass --api-key KEY (or set "
                                 "EC_SERVE_API_KEY) so its admin APIs need that key")
        self.host, self.ports, self.api_key = host, ports, api_key
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.binary = binary
        self.log_file = Path(log_file) if log_file else None
        self.verbose, self.exit_timeout, self.extra_args = verbose, int(exit_timeout), tuple(extra_args)
        self.process: subprocess.Popen | None = None
        self._workspace: Path | None = None
        self._log = None

    @property
    def _client_host(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else ("[::1]" if self.host in ("::", "[::]") else self.host)
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    @property
    def endpoints(self) -> dict[str, str]:
        h = self._client_host
        return {"http": f"http://{h}:{self.http_port}", "grpc": f"grpc://{h}:{self.grpc_port}",
                "metrics": f"http://{h}:{self.metrics_port}/metrics"}

    def command(self) -> list[str]:
        """The tritonserver command line (resolving the binary if not given)."""
        if self.binary is None:
            self.binary = find_tritonserver()
        args = [str(self.binary.path), f"--model-repository={self.repo.resolve()}", "--model-control-mode=none",
                "--disable-auto-complete-config", f"--exit-timeout-secs={self.exit_timeout}"]
        for proto in ("http", "grpc", "metrics"):
            args += [f"--{proto}-address={self.host}", f"--{proto}-port={self.ports[f'--{proto}-port']}"]
        if self.api_key:
            restricted = f"{','.join(ADMIN_APIS)}:{API_KEY_HEADER}={self.api_key}"
            args += [f"--http-restricted-api={restricted}", f"--grpc-restricted-protocol={restricted}"]
        if self._workspace is not None and self.binary.backends is not None:
            args += [f"--backend-directory={self._workspace / 'backends'}",
                     f"--cache-directory={self._workspace / 'cache'}"]
        return args + list(self.extra_args)

    def start(self, ready_timeout: float = 180.0, progress=None) -> "TritonServer":
        """Start the server and block until ``/v2/health/ready`` answers 200 (or raise with its log)."""
        self.binary = self.binary or find_tritonserver()
        for port in self.ports.values():
            check_port_free(self.host, port)
        self._workspace = Path(tempfile.mkdtemp(prefix="ec-serve-"))
        if self.binary.backends is not None:
            shutil.copytree(self.binary.backends, self._workspace / "backends",
                            ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy2(self.binary.stub, self._workspace / "backends" / "python" / "triton_python_backend_stub")
        log_path = self.log_file or self._workspace / "tritonserver.log"
        self._log_path = log_path
        out = None if self.verbose else open(log_path, "ab")
        self._log = out
        env = {**os.environ, **self.binary.env}
        self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT if out else None,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                        preexec_fn=die_with_parent)
        try:
            self.wait_ready(ready_timeout, progress)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoints['http']}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 180.0, progress=None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EcRuntimeError(f"tritonserver exited with code {self.process.returncode} before it was ready; "
                                     f"{self._log_tail()}")
            if self.is_ready():
                return
            if progress:
                progress()
            time.sleep(0.25)
        raise EcRuntimeError(f"tritonserver was not ready after {timeout:g} s; {self._log_tail()}")

    def _log_tail(self, lines: int = 12) -> str:
        if self.verbose or not self._log_path.is_file():
            return "see its output above"
        text = self._log_path.read_text(errors="replace").splitlines()
        errors = [ln for ln in text if ln.startswith("E") or "error" in ln.lower()][-lines:]
        return "its log says:\n  " + "\n  ".join(errors or text[-lines:]) + f"\n(full log: {self._log_path})"

    def stop(self) -> int | None:
        """SIGTERM the server, wait for in-flight requests (exit timeout), then SIGKILL. Idempotent."""
        code = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(self.exit_timeout + 10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        elif self.process is not None:
            code = self.process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workspace is not None:
            keep_log = self.log_file is None and code not in (0, None, -signal.SIGTERM)
            if not keep_log:
                shutil.rmtree(self._workspace, ignore_errors=True)
                self._workspace = None
        return code

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
