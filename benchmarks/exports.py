"""Opening the export directory ``ec-bench`` and ``ec-eval`` measure, with errors a user can act on.

:func:`open_export` reads ``export.json`` through :class:`ec_runtime.pipeline.ExportDir` and checks
the parts the benchmarks rely on (models table, architecture, Canny settings, listed files), so a
missing, empty, truncated or wrongly shaped export fails with one line before any work.
:func:`baseline_problem` says why the eager-torch baseline cannot run (checkpoint moved or changed).
"""

from __future__ import annotations

import numbers
from pathlib import Path

from ec_runtime.errors import EcRuntimeError

KINDS = ("canny", "edge", "inpaint")
REEXPORT = "re-export with `ec-export CHECKPOINT -o {dir}{flags}`"


class ExportProblem(EcRuntimeError):
    """An export directory cannot be benchmarked or evaluated as it is."""


def _shape_error(path: Path, what: str) -> ExportProblem:
    return ExportProblem(f"{path} is not a valid export manifest: {what}; "
                         "re-create the export directory with `ec-export CHECKPOINT -o DIR`")


def validate_manifest(manifest, path: Path) -> dict:
    """Check the parts of ``export.json`` the benchmarks read, beyond what ``ExportDir.open`` checked
    (a JSON object with a ``models`` table); returns ``manifest``."""
    models = manifest["models"]
    for kind in KINDS:
        entry = models.get(kind)
        if not isinstance(entry, dict) or "fp32" not in entry:
            raise _shape_error(path, f"no fp32 {kind} model in 'models'")
        bad = [p for p, name in entry.items() if not isinstance(name, str) or not name or "/" in name or "\\" in name]
        if bad:
            raise _shape_error(path, f"'models.{kind}.{bad[0]}' is not a file name")
    arch = (manifest.get("source") or {}).get("architecture") if isinstance(manifest.get("source"), dict) else None
    if not isinstance(arch, dict) or not all(
            isinstance(arch.get(k), int) and arch.get(k) > 0 for k in ("base_channels", "residual_blocks")):
        raise _shape_error(path, "'source.architecture' (base_channels, residual_blocks) is missing")
    settings = manifest.get("settings")
    canny = settings.get("canny") if isinstance(settings, dict) else None
    if not isinstance(canny, dict) or not isinstance(canny.get("sigma"), numbers.Real):
        raise _shape_error(path, "'settings.canny.sigma' is missing")
    return manifest


def available_precisions(manifest: dict) -> tuple[str, ...]:
    """The precisions a validated manifest holds both generators in."""
    from ec_runtime.exportdir import manifest_precisions

    return tuple(manifest_precisions(manifest))


def open_export(export_dir: str | Path, precisions=("fp32",), required: bool = True) -> dict:
    """The validated ``export.json`` of ``export_dir``; every listed model file at ``precisions`` must exist.

    With ``required=False`` precisions the export lacks are left out instead of refused.

    Raises :class:`EcRuntimeError` (never a traceback-worthy error) for a missing or empty folder,
    an unreadable, truncated or wrongly shaped manifest, a missing model file, or a precision the
    export lacks (the message names the ``ec-export`` flag that adds it).
    """
    from ec_runtime.pipeline import ExportDir

    export_dir = Path(export_dir)
    try:
        opened = ExportDir.open(export_dir)
    except EcRuntimeError:
        raise
    except (OSError, ValueError) as exc:  # e.g. export.json is a folder, or not UTF-8
        raise ExportProblem(f"cannot read {export_dir / 'export.json'}: {exc}") from None
    manifest = validate_manifest(opened.manifest, export_dir / "export.json")
    have = available_precisions(manifest)
    missing = [p for p in precisions if p not in have]
    if missing and not required:
        precisions, missing = [p for p in precisions if p in have], []
    if missing:
        flags = "".join(f" --{p}" for p in missing if p != "fp32")
        raise ExportProblem(f"{export_dir} has no {', '.join(missing)} models (it has {', '.join(have)}); "
                            + REEXPORT.format(dir=export_dir, flags=flags)
                            + f", or pass --precisions {','.join(have)}")
    for kind in KINDS:
        for precision in precisions:
            name = manifest["models"][kind].get(precision) or manifest["models"][kind]["fp32"]
            file = export_dir / name
            if not file.is_file():
                raise ExportProblem(f"{file} is listed in {export_dir / 'export.json'} but missing; "
                                    + REEXPORT.format(dir=export_dir, flags=""))
            if file.stat().st_size == 0:
                raise ExportProblem(f"{file} is empty; " + REEXPORT.format(dir=export_dir, flags=""))
    return manifest


def baseline_problem(manifest: dict) -> str | None:
    """Why the eager-torch baseline cannot run for this export, or None when its checkpoints are there.

    The checkpoints are the ones ``export.json`` records; a file at that path whose sha256 differs
    is a different model and is refused rather than measured as if it were the source.
    """
    from ec_runtime.tensorrt_support import sha256_file

    entries = (manifest.get("source") or {}).get("checkpoints") or []
    if not entries:
        return "export.json records no source checkpoint"
    for entry in entries:
        path = Path(str(entry.get("path", "")))
        if not path.is_file():
            hint = (" (a relative path: it was recorded relative to the folder ec-export ran in; run ec-bench "
                    "there or re-export)" if not path.is_absolute() else "")
            return f"the source checkpoint {path} is not found{hint}"
        want = entry.get("sha256")
        if want and sha256_file(path) != want:
            return f"{path} is not the checkpoint that was exported (its sha256 differs)"
    return None
