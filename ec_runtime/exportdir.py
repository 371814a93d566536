"""Opening an export directory (made by ``ec-export``) and checking its ``export.json``.

:meth:`ExportDir.open` fails with one clear message, naming the path and a command that fixes
it, for every way an export directory can be unusable:

* missing, not a directory, empty, or without ``export.json``: :class:`ModelNotFoundError`;
* ``export.json`` unreadable, not UTF-8, truncated or otherwise invalid JSON, or of the wrong
  shape (not an object, no ``models`` table, a kind or file name of the wrong type, a file name
  that leaves the directory): :class:`InvalidExportError`;
* a model file that is listed but missing or empty (:meth:`ExportDir.model_path`); a truncated
  or corrupt one is refused when ONNX Runtime loads it (``OrtRunner``), with the same hint.

Both error types derive from :class:`~ec_runtime.errors.EcRuntimeError`, so commands catch one
root. Typical use::

    export = ExportDir.open("export")
    export.precisions()                 # e.g. ["fp32", "fp16"]
    export.model_path("edge", "fp16")   # Path of edge.fp16.onnx
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from ec_runtime.errors import InvalidExportError, ModelNotFoundError

EXPORT_MANIFEST = "export.json"
EXPORT_FORMAT_PREFIX = "ec-deploy/export/"
KINDS = ("canny", "edge", "inpaint")
PRECISIONS = ("fp32", "fp16", "int8")
INT8_CPU = "int8_cpu"  # the export's U8S8 files for ONNX Runtime's CPU provider (precision int8)
# Commands that exist (checked by the tests): the default command of ec-export is `export`.
EXPORT_HINT = "`ec-export CHECKPOINT... -o DIR` (e.g. `ec-export EdgeModel_gen.pth InpaintingModel_gen.pth -o export`)"
PRECISION_FLAGS = {"fp16": "--fp16", "int8": "--int8"}


def _missing(message: str) -> ModelNotFoundError:
    return ModelNotFoundError(f"{message}. Create an export directory with {EXPORT_HINT}, then pass it with "
                              "--model / Inpainter.from_dir or set EC_MODEL_DIR")


def _invalid(path: Path, what: str) -> InvalidExportError:
    return InvalidExportError(f"{path}: {what}; re-create the export with {EXPORT_HINT}")


def _relative_name(value, where: str, manifest: Path) -> str:
    """A file name listed in the manifest: a non-empty string naming a file inside the directory."""
    if not isinstance(value, str) or not value:
        raise _invalid(manifest, f"{where} must be a file name (a string), got {json.dumps(value)[:60]}")
    for flavour in (PurePosixPath, PureWindowsPath):
        p = flavour(value)
        if p.is_absolute() or p.anchor or ".." in p.parts:
            raise _invalid(manifest, f"{where} = {value!r} points outside the export directory")
    return value


def _check_manifest(manifest, path: Path) -> dict:
    """Raise :class:`InvalidExportError` unless ``manifest`` has the shape ``ec-export`` writes."""
    if not isinstance(manifest, dict):
        raise _invalid(path, f"expected a JSON object at the top level, got {type(manifest).__name__}")
    fmt = manifest.get("format")
    if fmt is not None and not (isinstance(fmt, str) and fmt.startswith(EXPORT_FORMAT_PREFIX)):
        raise _invalid(path, f"unknown format {json.dumps(fmt)[:60]} (expected {EXPORT_FORMAT_PREFIX}v1)")
    models = manifest.get("models")
    if not isinstance(models, dict):
        raise _invalid(path, "no \"models\" table (an object mapping canny/edge/inpaint to their ONNX files)")
    for kind in KINDS:
        files = models.get(kind)
        if not isinstance(files, dict) or not files:
            raise _invalid(path, f"\"models\" has no {kind} entry (expected e.g. {{\"fp32\": \"{kind}.onnx\"}})")
        for precision, name in files.items():
            _relative_name(name, f"models.{kind}.{precision}", path)
    engines = manifest.get("engines")
    if engines is not None:
        if not isinstance(engines, dict):
            raise _invalid(path, "\"engines\" must be an object")
        for key, entry in engines.items():
            if not isinstance(entry, dict):
                raise _invalid(path, f"engines.{key} must be an object with an \"engine\" file name")
            _relative_name(entry.get("engine"), f"engines.{key}.engine", path)
    return manifest


def manifest_precisions(manifest: dict) -> list[str]:
    """Precisions for which a validated ``export.json`` lists both generators."""
    models = manifest["models"]
    return [p for p in PRECISIONS if all(p in models[k] for k in ("edge", "inpaint"))]


@dataclass
class ExportDir:
    """An export directory and its validated ``export.json`` (see the module docstring)."""

    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: str | os.PathLike) -> "ExportDir":
        """Open and validate ``root``; :class:`ModelNotFoundError` or :class:`InvalidExportError` on failure."""
        root = Path(root)
        if not root.exists():
            raise _missing(f"export directory not found: {root}")
        if not root.is_dir():
            if root.name == EXPORT_MANIFEST:
                raise _missing(f"{root} is the manifest file; pass the directory that holds it ({root.parent})")
            raise _missing(f"{root} is a file, not an export directory")
        path = root / EXPORT_MANIFEST
        if not path.is_file():
            try:
                empty = not any(root.iterdir())
            except OSError as exc:
                raise _missing(f"cannot list the export directory {root} ({exc.strerror})") from exc
            raise _missing(f"{root} is empty (no {EXPORT_MANIFEST}): not an export directory" if empty else
                           f"export manifest not found: {path} ({root} is not an export directory)")
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise InvalidExportError(f"{path}: cannot read the export manifest ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            raise _invalid(path, "not a text file (invalid UTF-8)") from exc
        if not text.strip():
            raise _invalid(path, "the export manifest is empty (an interrupted export?)")
        try:
            manifest = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise _invalid(path, f"not valid JSON{where} (truncated or edited?)") from exc
        return cls(root, _check_manifest(manifest, path))

    def precisions(self) -> list[str]:
        """Precisions for which both generators are listed (Canny always runs in fp32)."""
        return manifest_precisions(self.manifest)

    def model_path(self, kind: str, precision: str) -> Path:
        """The ONNX file of ``kind`` at ``precision`` (Canny falls back to fp32, its only exact form)."""
        models = self.manifest["models"].get(kind, {})
        name = models.get(precision) or (models.get("fp32") if kind == "canny" else None)
        if name is None:
            have = ", ".join(sorted(models)) or "none"
            flag = PRECISION_FLAGS.get(precision)
            fix = (f"re-export with `ec-export CHECKPOINT... -o {self.root} {flag}`" if flag else
                   f"re-export with `ec-export CHECKPOINT... -o {self.root}`")
            usable = self.precisions()
            pick = f", or use --precision {' / '.join(usable)}" if usable else ""
            raise ModelNotFoundError(f"{self.root / EXPORT_MANIFEST} lists no {kind} model at {precision} "
                                     f"(has: {have}); {fix}{pick}")
        path = self.root / name
        if not path.is_file():
            raise ModelNotFoundError(f"model file listed in {self.root / EXPORT_MANIFEST} is missing: {path}; "
                                     f"re-create the export with {EXPORT_HINT}")
        if path.stat().st_size == 0:
            raise InvalidExportError(f"{path}: the model file is empty (an interrupted copy?); "
                                     f"re-create the export with {EXPORT_HINT}")
        return path

    def model_variant(self, precision: str, provider: str) -> str:
        """The ``models`` key to run ``precision`` on ONNX Runtime's ``provider``.

        ``int8`` on the CPU provider picks the U8S8 files made for it (``int8_cpu``) when the export
        has them; TensorRT, ORT's TensorRT and CUDA providers (and older exports) get ``int8``.
        """
        models = self.manifest.get("models", {})
        if precision == "int8" and provider == "CPUExecutionProvider" and all(
                INT8_CPU in models.get(kind, {}) for kind in ("edge", "inpaint")):
            return INT8_CPU
        return precision

    def engine_path(self, kind: str, precision: str) -> Path | None:
        """The engine of ``kind`` at ``precision`` (Canny falls back to fp32), or None if not built."""
        engines = self.manifest.get("engines") or {}
        entry = engines.get(f"{kind}.{precision}") or (engines.get(f"{kind}.fp32") if kind == "canny" else None)
        if not entry:
            return None
        path = self.root / entry["engine"]
        return path if path.is_file() else None
