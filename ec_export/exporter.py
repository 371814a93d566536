"""Export an EdgeConnect generator pair to an export directory (DESIGN §5, the ONNX I/O contract).

:func:`export_models` writes ``canny``, ``edge``, ``inpaint`` (and optionally the fused
``pipeline``) in FP32 plus the requested FP16/INT8 variants, measures each variant's drift against
FP32 on real photos with holes, optionally builds TensorRT engines, and writes ``export.json``.
Everything is written into a temporary directory next to the target and moved into place at the
end, so a failed export never leaves half a directory. :func:`export_checkpoints` does the same
from checkpoint files (see :mod:`ec_export.sources`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ec_export.common import (DEFAULT_CANNY, EXPORT_FORMAT, INT8_CPU, KINDS, PRECISIONS, TRACE_SIZE,  # noqa: F401
                              ExportJob, file_name, quiet)
from ec_export.errors import ExportError


def _check_pair(edge, inpaint) -> dict[str, Any]:
    from ec_train.checkpoints import generator_architecture

    edge_arch = generator_architecture(getattr(edge, "module", edge).state_dict())
    inpaint_arch = generator_architecture(getattr(inpaint, "module", inpaint).state_dict())
    if edge_arch["kind"] != "edge" or inpaint_arch["kind"] != "inpaint":
        raise ExportError(f"expected an (edge, inpaint) generator pair, got ({edge_arch['kind']}, {inpaint_arch['kind']})")
    for key in ("base_channels", "residual_blocks"):
        if edge_arch[key] != inpaint_arch[key]:
            raise ExportError(f"the edge and inpaint generators do not belong together: {key} "
                              f"{edge_arch[key]} vs {inpaint_arch[key]}")
    return {"base_channels": edge_arch["base_channels"], "residual_blocks": edge_arch["residual_blocks"],
            "edge_spectral_norm": edge_arch["spectral_norm"]}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _target_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "export.json").is_file():
        raise ExportError(f"{out_dir} is not empty and is not an earlier export (no export.json); "
                          "choose another --output directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return out_dir


def _move_into_place(staging: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        out_dir.rename(old / out_dir.name)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_models(edge, inpaint, out_dir: str | Path, *, precisions: Sequence[str] = ("fp32",), fused: bool = False,
                  opset: int = 17, canny: dict | None = None, calib_images=None, calib_method: str = "entropy",
                  calib_size: int = 256, accuracy_size: int = 128, source: dict | None = None,
                  engine: dict | None = None, progress: bool = True) -> dict:
    """Export an (edge, inpaint) generator pair and return the ``export.json`` content.

    ``precisions`` adds ``fp16``/``int8`` to the fp32 files that are always written. ``fused``
    also writes ``pipeline.onnx``. ``canny`` overrides ``{sigma, low, high, iterations}``.
    ``calib_images`` is a directory, a list of uint8 RGB arrays, or None for the bundled photos
    (resized to ``calib_size``). Drift is measured on two photos of ``accuracy_size`` pixels.
    ``source`` is the ``export.json`` ``source`` entry.
    ``engine`` (``{"shapes", "workspace_mb", "timing_cache", "version_compatible"}``) builds a
    TensorRT engine for every ONNX file written.
    """
    from tqdm.auto import tqdm

    from ec_export import variants  # torch and onnx: imported when an export runs

    precisions = tuple(dict.fromkeys(("fp32", *precisions)))
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ExportError(f"unknown precision(s) {', '.join(unknown)}; choose from {', '.join(PRECISIONS)}")
    if calib_method not in ("entropy", "percentile", "minmax"):
        raise ExportError(f"unknown calibration method {calib_method!r}; choose entropy, percentile or minmax")
    canny_settings = {**DEFAULT_CANNY, **(canny or {})}
    architecture = _check_pair(edge, inpaint)
    out_dir = _target_dir(Path(out_dir).absolute())
    if engine is not None:
        from ec_export.engine import validate_shapes

        validate_shapes(engine.get("shapes", ()))
    calib = None
    if "int8" in precisions:
        from ec_export.calibration import load_calibration_images

        calib = load_calibration_images(calib_images, calib_size)  # fails early on an empty set

    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp creates 0700; the export directory gets the usual mode
    try:
        steps = ["fp32", *[p for p in precisions if p != "fp32"], *(["engines"] if engine else [])]
        bar = tqdm(steps, desc="ec-export", unit="step", disable=not progress)
        job = ExportJob(staging, opset, canny_settings, architecture, accuracy_size)
        for step in bar:
            bar.set_postfix_str(step)
            if step == "fp32":
                variants.export_fp32(job, edge, inpaint, fused)
            elif step == "fp16":
                variants.write_fp16(job)
            elif step == "int8":
                with quiet():
                    variants.write_int8(job, calib, calib_method)
            elif step == "engines":
                _build_engines(job, engine)
        settings = {"opset": opset, "canny": job.canny, "precisions": list(precisions), "fused": fused,
                    "accuracy_size": accuracy_size,
                    "calibration": None if calib is None else {
                        "method": calib_method, "images": len(calib), "size": calib_size,
                        "source": str(calib_images) if isinstance(calib_images, (str, Path)) else
                        ("bundled skimage photos" if calib_images is None else "in-memory images"),
                        "masks": "procedural free-form holes, 10-50% of the image"}}
        info = {"format": EXPORT_FORMAT, "toolkit_version": job.version,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "source": {"checkpoints": [], **(source or {}), "architecture": architecture},
                "settings": settings, "models": job.models, "accuracy": job.accuracy}
        if job.notes:
            info["notes"] = job.notes
        if engine:
            info["engines"] = job.engines
        (staging / "export.json").write_text(json.dumps(info, indent=2, sort_keys=False) + "\n")
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def _build_engines(job: ExportJob, engine: dict) -> None:
    from ec_export.engine import build_engine

    for kind, files in job.models.items():
        for precision, name in files.items():
            if precision == INT8_CPU:  # uint8 activations: ONNX Runtime's CPU files, not TensorRT's
                continue
            onnx_path = job.dir / name
            engine_path = build_engine(onnx_path, shapes=engine["shapes"],
                                       workspace_mb=engine.get("workspace_mb", 2048),
                                       timing_cache=engine.get("timing_cache"),
                                       version_compatible=engine.get("version_compatible", False),
                                       precision=precision, tf32=engine.get("tf32", False))
            job.engines[f"{kind}.{precision}"] = {"engine": engine_path.name, "sidecar": engine_path.name + ".json"}


def export_checkpoints(paths: Sequence[str | Path], out_dir: str | Path, **kw) -> dict:
    """Load a generator pair from checkpoint file(s) or a directory and :func:`export_models` it.

    Accepted: one training checkpoint holding both generators; the official
    ``EdgeModel_gen.pth`` + ``InpaintingModel_gen.pth``; or a directory holding either.
    """
    from ec_export.sources import load_generator_pair

    edge, inpaint, source = load_generator_pair(paths)
    return export_models(edge, inpaint, out_dir, source=source, **kw)
