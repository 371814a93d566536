"""Writing outputs safely: writability checks before work, atomic writes with the usual modes, strict JSON.

Torch-free, so ``ec-export``, ``ec-bench`` and ``ec-eval`` use it too (DESIGN §8):

- :func:`check_writable_file` / :func:`check_writable_dir` run before any long work and raise
  :class:`~ec_train.errors.OutputError` naming the option, so a benchmark never runs for minutes
  only to fail on its report path;
- :func:`write_atomic` writes to a hidden temp name and renames it into place, with mode
  ``0666 & ~umask`` (``mkstemp`` alone would leave 0600);
- :func:`strict_json` turns NaN/inf into ``null`` and never writes bare ``NaN``/``Infinity``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from ec_train.errors import OutputError


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: ``0666 & ~umask``."""
    return 0o666 & ~umask()


def default_dir_mode() -> int:
    """The mode ``mkdir`` would give a new folder: ``0777 & ~umask``."""
    return 0o777 & ~umask()


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists() or parent.is_symlink():
            return parent
    return Path(path.anchor or ".")


def _probe(folder: Path, what: str, shown: Path) -> None:
    """Create and remove a temp file in ``folder`` (the only test that also holds for root)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ec-write-test-", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {what} {shown}: {folder} is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def check_writable_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Check that file ``path`` can be created or replaced; missing parent folders are fine.

    Raises :class:`OutputError` ("cannot write --json x: ...") when ``path`` is a folder, sits
    under a file, or its nearest existing folder refuses new files. Creates nothing.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a folder")
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise OutputError(f"cannot write {what} {path}: {base} is not a folder")
    _probe(base, what, path)
    return path


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Check that folder ``path`` exists and accepts new files, or can be created. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it exists and is not a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise OutputError(f"cannot write {what} {path}: {base} is not a folder")
    _probe(base, what, path)
    return path


def write_atomic(path: str | os.PathLike, data: bytes | str, what: str = "output") -> Path:
    """Write ``data`` to ``path`` through a hidden temp file and a rename; the usual file mode.

    Parent folders are created. An existing file at ``path`` is replaced only once the new
    content is complete. ``OSError`` becomes :class:`OutputError` naming ``what``.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN/inf float (also inside dicts, lists and tuples) replaced by ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if hasattr(obj, "item") and hasattr(obj, "dtype") and getattr(obj, "ndim", 1) == 0:  # numpy scalar
        return finite_or_none(obj.item())
    return obj


def strict_json(obj: Any, **kw) -> str:
    """``json.dumps`` that writes non-finite floats as ``null`` and can never emit ``NaN``/``Infinity``."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **kw)
