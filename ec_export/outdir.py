"""The export directory as an output: staged writes, own files only, stale staging cleaned up.

Rules (DESIGN §8), for ``ec-export CHECKPOINT -o DIR``:

- ``DIR`` may be new, empty, an earlier export, or any folder of the user's (the folder holding
  the checkpoint, notes...). The export writes only its own file names (``edge.onnx``,
  ``export.json``, engines...). A file of that name which an earlier export did not write
  (it is not listed in ``DIR/export.json``) is a clash, refused before any work.
- Everything is written into a hidden staging folder first and moved into place at the end:
  a failed or interrupted export leaves ``DIR`` as it was.
- On success, the artifacts an earlier export listed and this one did not rewrite (say
  ``edge.fp16.onnx`` when re-exporting without ``--fp16``) are removed, so ``export.json`` and the
  folder agree. Nothing else in ``DIR`` is touched.
- Staging folders carry the writer's process id (``.ec-export-<pid>-<random>``). A later export
  into the same place removes those whose process is gone (after ``kill -9`` or a power cut).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterable

from ec_export.errors import ExportError
from ec_train.files import OutputError, check_writable_dir, default_dir_mode

MANIFEST = "export.json"
STAGING_PREFIX = ".ec-export-"
_STAGING = re.compile(r"^\.(?:.+\.)?ec-export-(\d+)-[A-Za-z0-9_]+$")


def _plain_name(name) -> str | None:
    """``name`` if it is a file name directly inside the folder (no separators, no ``..``)."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        return None
    if "/" in name or "\\" in name or PurePosixPath(name).name != name:
        return None
    return name


def own_files(out_dir: Path) -> set[str]:
    """The file names an earlier export recorded in ``out_dir/export.json`` (empty if none or unreadable)."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("ec-deploy/export/"):
        return set()  # not a manifest ec-export wrote: its files are the user's
    names = {MANIFEST}
    for per in (manifest.get("models") or {}).values() if isinstance(manifest.get("models"), dict) else ():
        if isinstance(per, dict):
            names.update(n for n in map(_plain_name, per.values()) if n)
    engines = manifest.get("engines")
    for entry in engines.values() if isinstance(engines, dict) else ():
        if isinstance(entry, dict):
            names.update(n for n in map(_plain_name, (entry.get("engine"), entry.get("sidecar"))) if n)
    return names


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_staging(*folders: Path) -> list[Path]:
    """Remove staging folders in ``folders`` whose writing process no longer runs; returns them."""
    removed = []
    for folder in folders:
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            m = _STAGING.match(entry.name)
            if m and entry.is_dir() and not entry.is_symlink() and not _pid_alive(int(m.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


class ExportOutput:
    """One export's output directory: checks before work, a staging folder, and the final move.

    >>> out = ExportOutput("export", planned={"edge.onnx", "inpaint.onnx", "canny.onnx", "export.json"})
    >>> staging = out.begin()          # raises ExportError on a clash or an unwritable place
    >>> ...                            # write files into staging
    >>> out.commit()                   # or out.abort() on failure
    """

    def __init__(self, out_dir: str | Path, planned: Iterable[str]):
        self.dir = Path(out_dir).absolute()
        self.planned = set(planned) | {MANIFEST}
        self.staging: Path | None = None
        self.removed_stale: list[Path] = []

    def check(self) -> None:
        """Refuse, before any work, a target that is a file, unwritable, or holds a clashing user file."""
        try:
            check_writable_dir(self.dir, "--output")
        except OutputError as exc:
            raise ExportError(str(exc)) from None
        if not self.dir.is_dir():
            return
        own = own_files(self.dir)
        clashes = sorted(n for n in self.planned if (self.dir / n).exists() or (self.dir / n).is_symlink())
        foreign = [n for n in clashes if n not in own or not (self.dir / n).is_file() or (self.dir / n).is_symlink()]
        if foreign:
            raise ExportError(f"{self.dir} already holds {', '.join(foreign)}, which no earlier export there wrote; "
                              "move it away or choose another --output folder (ec-export never overwrites "
                              "files it did not write)")

    def begin(self) -> Path:
        """Check, clean stale staging folders of dead exports, and create this export's staging folder."""
        self.check()
        parent = self.dir if self.dir.is_dir() else self.dir.parent
        self.removed_stale = clean_stale_staging(self.dir.parent, *([self.dir] if self.dir.is_dir() else []))
        try:
            parent.mkdir(parents=True, exist_ok=True)
            prefix = (STAGING_PREFIX if parent == self.dir else f".{self.dir.name}{STAGING_PREFIX}") + f"{os.getpid()}-"
            self.staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
            self.staging.chmod(default_dir_mode())  # mkdtemp makes 0700; a new export dir gets the usual mode
        except OSError as exc:
            raise ExportError(f"cannot write --output {self.dir}: {exc.strerror or exc}") from None
        return self.staging

    def commit(self) -> list[str]:
        """Move the staged files into place (``export.json`` last); returns the stale own files removed."""
        staging = self._staging()
        if not self.dir.exists():
            try:
                staging.rename(self.dir)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise ExportError(f"cannot move the export into {self.dir}: {exc.strerror}") from None
            else:
                self.staging = None
                return []
        old_own = own_files(self.dir)
        written = sorted(p.name for p in staging.iterdir())
        self.check_written(written, old_own)
        for name in sorted(written, key=lambda n: n == MANIFEST):  # the manifest goes last
            _move(staging / name, self.dir / name)
        stale = sorted(old_own - set(written))
        for name in stale:
            path = self.dir / name
            if path.is_file() and not path.is_symlink():
                path.unlink()
        self.abort()
        return stale

    def check_written(self, written: list[str], own: set[str]) -> None:
        """Before anything moves: a written name the plan missed must not land on a file of the user's."""
        unplanned = sorted(set(written) - self.planned)
        foreign = [n for n in unplanned if ((self.dir / n).exists() or (self.dir / n).is_symlink())
                   and (n not in own or not (self.dir / n).is_file())]
        if foreign:
            raise ExportError(f"{self.dir} already holds {', '.join(foreign)}, which no earlier export there wrote; "
                              "move it away or choose another --output folder (ec-export never overwrites "
                              "files it did not write)")

    def abort(self) -> None:
        """Remove the staging folder (after a failure or an interrupt)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def _staging(self) -> Path:
        if self.staging is None:
            raise ExportError("internal error: ExportOutput.commit() before begin()")
        return self.staging


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise ExportError(f"cannot write {dst}: {exc.strerror}") from None
        shutil.move(str(src), str(dst))


def planned_files(precisions: Iterable[str], fused: bool, engines: bool) -> set[str]:
    """Every file name an export with these settings may write into its folder."""
    from ec_export.common import file_name

    precisions = tuple(precisions)

    kinds = ("canny", "edge", "inpaint") + (("pipeline",) if fused else ())
    names = {file_name(k, p) for k in kinds for p in precisions}
    if engines:
        for onnx_name in list(names):
            engine = onnx_name[: -len(".onnx")] + ".engine"
            names |= {engine, engine + ".json"}
    if "int8" in precisions:  # the int8 step also writes ONNX Runtime's CPU variant (no engines for it)
        from ec_export.common import INT8_CPU

        names |= {file_name(k, INT8_CPU) for k in kinds if k != "canny"}
    return names | {MANIFEST}
