"""Helpers of the hostile-input battery: run a console command the way a user does, then check it.

Every case runs one of the five console commands in a fresh subprocess (so signals, exit codes,
file modes and stray tracebacks are real) and asserts three things: the exit code, that no Python
traceback was printed, and the state of the files afterwards::

    res = run("ec-bench", "missing_dir", cwd=tmp_path)
    fails(res, "does not exist")            # non-zero exit, no traceback, message in the output
    assert tree(tmp_path) == before         # nothing written, nothing deleted

The commands run from the checkout under test (``PYTHONPATH`` points at it), not from whatever
``ec-*`` scripts happen to be installed.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Console command -> "module:function", as in pyproject.toml's [project.scripts].
COMMANDS = {
    "ec-train": "ec_train.cli:main",
    "ec-inpaint": "ec_runtime.cli:main",
    "ec-export": "ec_export.cli:main",
    "ec-bench": "benchmarks.cli:main",
    "ec-eval": "benchmarks.cli:eval_main",
}


@dataclass
class Result:
    """What a command did: exit code and its stdout + stderr together."""

    rc: int
    out: str
    args: tuple

    def __str__(self) -> str:
        return f"$ {' '.join(map(str, self.args))}\n(exit {self.rc})\n{self.out}"


def command_line(command: str, *args) -> list[str]:
    """The argv that runs console ``command`` with ``args`` from this checkout."""
    module, func = COMMANDS[command].split(":")
    code = f"import sys; sys.argv[0] = {command!r}; from {module} import {func}; {func}()"
    return [sys.executable, "-c", code, *map(str, args)]


def environment(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONWARNINGS"] = "ignore"
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def run(command: str, *args, cwd=None, env: dict | None = None, timeout: float = 300, umask: int | None = None) -> Result:
    """Run console ``command`` with ``args`` in a subprocess and return its :class:`Result`."""
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    proc = subprocess.run(command_line(command, *args), cwd=cwd, env=environment(env), capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec)
    return Result(proc.returncode, proc.stdout + proc.stderr, (command, *args))


def start(command: str, *args, cwd=None, env: dict | None = None) -> subprocess.Popen:
    """Start console ``command`` in the background (for kill/SIGTERM cases); output goes to a pipe."""
    return subprocess.Popen(command_line(command, *args), cwd=cwd, env=environment(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout: float = 120, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass; returns its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 120) -> Result:
    """Send ``sig`` to a process from :func:`start` and collect its exit code and output."""
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out, tuple(proc.args))


def no_traceback(res: Result) -> None:
    assert "Traceback (most recent call last)" not in res.out, str(res)


def ok(res: Result, *needles: str) -> Result:
    """Exit 0, no traceback, and every needle in the output."""
    assert res.rc == 0, str(res)
    no_traceback(res)
    for needle in needles:
        assert needle in res.out, f"{needle!r} not in output\n{res}"
    return res


def fails(res: Result, *needles: str, rc: int | None = None) -> Result:
    """A non-zero exit (``rc`` if given), no traceback, an ``Error:`` line, and every needle in the output."""
    assert res.rc != 0, str(res)
    if rc is not None:
        assert res.rc == rc, str(res)
    no_traceback(res)
    assert "Error" in res.out, f"no error message\n{res}"
    for needle in needles:
        assert needle.lower() in res.out.lower(), f"{needle!r} not in output\n{res}"
    return res


def error_line(res: Result) -> str:
    """The ``Error: ...`` line click printed (the user-facing message)."""
    lines = [ln for ln in res.out.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, str(res)
    return lines[0]


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) -> sha256 of its content; folders end with ``/``."""
    root = Path(root)
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            out[rel + "/"] = ""
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def mode(path: Path) -> int:
    """Permission bits of ``path``."""
    return Path(path).stat().st_mode & 0o777


def running_as_root() -> bool:
    """Root ignores file permissions, so read-only cases cannot be provoked by chmod."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def readonly_dir(tmp_path: Path) -> Path:
    """An existing folder nobody may create files in: a chmod 0555 folder, or ``/sys`` for root
    (root ignores permission bits, but sysfs refuses new files even to root)."""
    if running_as_root():
        return Path("/sys")
    ro = Path(tmp_path) / "readonly"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    return ro
