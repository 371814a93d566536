"""Helpers for the hostile-input battery of ``ec-inpaint`` and the ``ec_runtime`` Python API.

Every CLI case goes through :func:`inpaint_cli`, which runs the command in-process and checks
that it ended through a clean exit (a ``SystemExit``, never another exception) and printed no
traceback. :func:`snapshot` records a directory's files (content hash and mode) so a case can
assert exactly what a command left behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "ec_runtime" / "models" / "demo"


@pytest.fixture(scope="session")
def demo_export(tmp_path_factory) -> Path:
    """A private copy of the bundled demo export (fast: lite generators, FP32)."""
    out = tmp_path_factory.mktemp("hostile_export") / "export"
    shutil.copytree(DEMO, out)
    return out


def export_with_manifest(root: Path, source: Path, manifest_text: str | bytes | None) -> Path:
    """An export directory ``root`` with the ONNX files of ``source`` (symlinked) and the given
    ``export.json`` text (``None``: no manifest at all)."""
    root.mkdir(parents=True, exist_ok=True)
    for f in source.glob("*.onnx"):
        (root / f.name).symlink_to(f)
    if manifest_text is not None:
        data = manifest_text.encode() if isinstance(manifest_text, str) else manifest_text
        (root / "export.json").write_bytes(data)
    return root


def assert_clean(result, code: int | None = None) -> str:
    """The command ended with exit ``code`` (any non-zero one when None) through a clean exit,
    and printed no traceback. Returns its output (stdout and stderr)."""
    output = result.output
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), f"uncaught {type(exc).__name__}: {exc}\n{output}"
    assert "Traceback" not in output, output
    if code is None:
        assert result.exit_code != 0, output
    else:
        assert result.exit_code == code, output
    return output


def inpaint_cli(args: list, code: int | None = None, env: dict | None = None) -> str:
    """Run ``ec-inpaint ARGS`` in-process; assert a clean exit with ``code``; return its output."""
    from ec_runtime.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)
    return assert_clean(result, code)


def run_process(argv: list, cwd: Path | None = None, umask: int | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a console command of this checkout in a real process (own umask and environment)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=pre)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """``{relative path: (sha256, permission bits)}`` of every file under ``root`` (hidden ones too)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                             stat.S_IMODE(p.stat().st_mode))
    return out


def photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth, non-constant uint8 RGB test image (H, W, 3)."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1)], axis=2)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def box_mask(h: int = 48, w: int = 64, box=(10, 20, 30, 44)) -> np.ndarray:
    """A bool (H, W) mask with one rectangular hole (y0, x0, y1, x1)."""
    m = np.zeros((h, w), bool)
    m[box[0]:box[2], box[1]:box[3]] = True
    return m


def save(path: Path, arr: np.ndarray, exif_orientation: int | None = None, **kw) -> Path:
    """Save ``arr`` (uint8 RGB, gray or bool) with Pillow, format by suffix, optional EXIF orientation."""
    from PIL import Image

    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    img = Image.fromarray(arr)
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kw["exif"] = exif.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def pair(root: Path, stem: str = "img", h: int = 48, w: int = 64, seed: int = 0, image_suffix: str = ".png"):
    """Write ``root/<stem><suffix>`` and ``root/<stem>_mask.png``; returns (image path, mask path, image, mask)."""
    img, mask = photo(h, w, seed), box_mask(h, w)
    ip, mp = save(root / f"{stem}{image_suffix}", img), save(root / f"{stem}_mask.png", mask)
    return ip, mp, img, mask


PEAK_CHILD = (
    "import atexit, sys\n"
    "def _hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('VmHWM_KB', line.split()[1], file=sys.stderr)\n"
    "atexit.register(_hwm)\n"
    "from ec_runtime.cli import main\n"
    "main(sys.argv[1:], prog_name='ec-inpaint')\n"
)


def peak_rss_of_inpaint(args: list, cwd: Path | None = None,
                        timeout: float = 600) -> tuple[int, subprocess.CompletedProcess]:
    """Run ``ec-inpaint ARGS`` in a fresh process; returns (peak RSS in bytes, the process). Linux only."""
    proc = run_process(["-c", PEAK_CHILD, *args], cwd=cwd, timeout=timeout)
    kb = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("VmHWM_KB")]
    assert kb, proc.stderr[-2000:]
    return kb[-1] * 1024, proc
