"""Export an EdgeConnect generator pair to an export directory (DESIGN §5, the ONNX I/O contract).

:func:`export_models` writes ``canny``, ``edge``, ``inpaint`` (and optionally the fused
``pipeline``) in FP32 plus the requested FP16/INT8 variants, measures each variant's drift against
FP32 on real photos with holes, optionally builds TensorRT engines, and writes ``export.json``.
Everything is written into a hidden staging folder and moved into place at the end, so a failed
export never leaves half a directory; only the export's own files are replaced
(:mod:`ec_export.outdir`). Non-finite weights and drift are refused, and ``export.json`` is strict JSON. :func:`export_checkpoints` does the same
from checkpoint files (see :mod:`ec_export.sources`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ec_export.common import (DEFAULT_CANNY, EXPORT_FORMAT, INT8_CPU, KINDS, PRECISIONS, TRACE_SIZE,  # noqa: F401
                              ExportJob, file_name, quiet)
from ec_export.errors import ExportError
from ec_export.outdir import ExportOutput, planned_files
from ec_train.files import strict_json


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
    check_finite_weights(edge, "edge")
    check_finite_weights(inpaint, "inpaint")
    output = ExportOutput(out_dir, planned_files(precisions, fused, engine is not None))
    output.check()
    if engine is not None:
        from ec_export.engine import validate_shapes

        validate_shapes(engine.get("shapes", ()))
    calib = None
    if "int8" in precisions:
        from ec_export.calibration import load_calibration_images

        calib = load_calibration_images(calib_images, calib_size)  # fails early on an empty set

    staging = output.begin()
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
                        "source": str(Path(calib_images).absolute()) if isinstance(calib_images, (str, Path)) else
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
        check_finite_accuracy(job.accuracy)
        (staging / "export.json").write_text(strict_json(info, indent=2, sort_keys=False) + "\n")
        output.commit()
    except BaseException:
        output.abort()
        raise
    return info


def check_finite_weights(model, kind: str) -> None:
    """Refuse a generator with NaN or infinite weights (a diverged run or a damaged file)."""
    import torch

    for name, tensor in getattr(model, "module", model).state_dict().items():
        if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ExportError(f"the {kind} generator's {name} holds {bad} NaN/infinite value(s) of {tensor.numel()}: "
                              "the checkpoint is damaged or its training diverged; export an earlier checkpoint")


def check_finite_accuracy(accuracy: dict) -> None:
    """Refuse an export whose measured drift is NaN or infinite (a variant that overflows).

    An infinite PSNR is an exact match and fine (written as null); a NaN PSNR or a non-finite
    max abs diff means a model produced NaN/inf outputs.
    """
    import math

    for precision, entry in accuracy.items():
        for kind, m in {"all": entry, **entry.get("models", {})}.items():
            diff, psnr = m.get("max_abs_diff"), m.get("psnr_db")
            if (diff is not None and not math.isfinite(diff)) or (psnr is not None and math.isnan(psnr)):
                what = "the export" if kind == "all" else f"{kind}.{precision}"
                raise ExportError(f"{what} produces NaN/infinite outputs on the accuracy photos (max abs diff "
                                  f"{diff}, PSNR {psnr} against {'torch' if precision == 'fp32' else 'fp32'}); "
                                  "nothing was written")


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
