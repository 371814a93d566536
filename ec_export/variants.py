"""The steps of an export: FP32 tracing, FP16 and INT8 variants, and their measured drift.

Used by :func:`ec_export.exporter.export_models`; each step reads and extends its
:class:`~ec_export.common.ExportJob`
(staging directory, ``models`` table, ``accuracy`` and ``notes`` of ``export.json``).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import onnx
import torch

from ec_export.common import FP16_MIN_PSNR_DB, INT8_CPU, TRACE_SIZE, psnr
from ec_export.calibration import accuracy_samples, holes_for, to_nchw
from ec_export.errors import ExportError
from ec_export.onnx_io import export_onnx, set_metadata
from ec_export.wrappers import EDGE_IO, INPAINT_IO, PIPELINE_IO, EdgeStage, FusedPipeline, InpaintStage, prepare_generator

GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721], np.float32)[None, :, None, None]
# Escalation order when an FP16 model misses the PSNR gate: keep these op types in FP32 too.
FP16_FALLBACK_OPS = ("Sigmoid", "Tanh", "ConvTranspose", "Conv")
IO = {"edge": EDGE_IO, "inpaint": INPAINT_IO, "pipeline": PIPELINE_IO}


def _gray(image: np.ndarray) -> np.ndarray:
    return (image * GRAY_WEIGHTS).sum(1, keepdims=True).astype(np.float32)


def _run(job, kind: str, precision: str, feed: dict) -> list[np.ndarray]:
    return job.run(kind, precision, feed)


def _stage_feeds(job, samples, fused: bool) -> dict[str, list[dict]]:
    """Per-model input feeds for (image, mask) samples, edges from the FP32 Canny and edge models."""
    feeds = {"canny": [], "edge": [], "inpaint": [], "pipeline": []}
    for image, mask in samples:
        gray = _gray(image)
        edges = _run(job, "canny", "fp32", {"gray": gray, "mask": mask})[0]
        edges_out = _run(job, "edge", "fp32", {"gray": gray, "edges": edges, "mask": mask})[0]
        feeds["canny"].append({"gray": gray, "mask": mask})
        feeds["edge"].append({"gray": gray, "edges": edges, "mask": mask})
        feeds["inpaint"].append({"image": image, "edges": edges_out, "mask": mask})
        if fused:
            feeds["pipeline"].append({"image": image, "mask": mask})
    return feeds


def export_fp32(job, edge, inpaint, fused: bool) -> None:
    """Trace canny/edge/inpaint (and the fused pipeline) to FP32 ONNX and compare them with torch."""
    from ec_export.canny_onnx import CannyFromHoleMask, export_canny

    c = job.canny
    canny = CannyFromHoleMask(c["sigma"], c["low"], c["high"], c["iterations"])
    job.canny = canny.settings()
    export_canny(job.record("canny", "fp32"), **job.canny, opset=job.opset)
    stages = {"edge": EdgeStage(prepare_generator(edge)), "inpaint": InpaintStage(prepare_generator(inpaint))}
    if fused:
        stages["pipeline"] = FusedPipeline(stages["edge"].generator, stages["inpaint"].generator, canny)
    image, mask = _trace_inputs()
    gray = (image * torch.from_numpy(GRAY_WEIGHTS)).sum(1, keepdim=True)
    with torch.no_grad():
        edges = canny(gray, mask)
    examples = {"edge": (gray, edges, mask), "inpaint": (image, edges, mask), "pipeline": (image, mask)}
    for kind, module in stages.items():
        export_onnx(module, examples[kind], job.record(kind, "fp32"), IO[kind]["inputs"], IO[kind]["outputs"],
                    opset=job.opset, metadata=job.metadata(kind, "fp32", IO[kind]))
    job.samples = accuracy_samples(job.accuracy_size)
    job.feeds = _stage_feeds(job, job.samples, fused)
    job.accuracy["fp32"] = {"reference": "torch (eager, float32)", "models": {}}
    for kind, module in stages.items():
        diffs = []
        for feed in job.feeds[kind]:
            with torch.no_grad():
                ref = module(*(torch.from_numpy(feed[name]) for name in IO[kind]["inputs"]))
            ref = ref if isinstance(ref, tuple) else (ref,)
            out = _run(job, kind, "fp32", feed)
            diffs += [float(np.abs(o - r.numpy()).max()) for o, r in zip(out, ref)]
        job.accuracy["fp32"]["models"][kind] = {"max_abs_diff": max(diffs)}
    job.accuracy["fp32"]["max_abs_diff"] = max(m["max_abs_diff"] for m in job.accuracy["fp32"]["models"].values())


def _trace_inputs():
    from ec_train.samples import sample_photo

    img = sample_photo("astronaut", TRACE_SIZE)
    image, mask = to_nchw(img, holes_for([img], seed=7)[0])
    return torch.from_numpy(image), torch.from_numpy(mask)


def _drift(job, kind: str, precision: str) -> dict:
    """PSNR (worst sample) and max abs diff of ``kind``'s first output against FP32."""
    psnrs, diffs = [], []
    for feed in job.feeds[kind]:
        ref = _run(job, kind, "fp32", feed)[0]
        out = _run(job, kind, precision, feed)[0]
        psnrs.append(psnr(ref, out))
        diffs.append(float(np.abs(ref - out).max()))
    return {"psnr_db": min(psnrs), "max_abs_diff": max(diffs), "output": IO.get(kind, {"outputs": ["edges"]})["outputs"][0]}


def _canny_node_names(model: onnx.ModelProto) -> list[str]:
    """The nodes of the Canny subgraph inside the fused pipeline and everything feeding them (gray)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    stack = [n for n in model.graph.node if n.name.startswith("/canny/")]
    seen: dict[str, onnx.NodeProto] = {}
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen[node.name] = node
        stack += [producers[i] for i in node.input if i in producers]
    return list(seen)


@contextlib.contextmanager
def _without_onednn():
    """torch's own CPU kernels instead of oneDNN's (its flags context warns about Intel GPUs' TF32: silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def _canny_fp16_flips(job) -> int:
    """Edge pixels that differ between Canny in float16 and float32 arithmetic on the accuracy photos.

    Measured with the torch module in float16 rather than with ONNX Runtime: its CPU provider runs
    FP16 nodes that lack an FP16 kernel in float32, which would hide the flips a GPU produces.
    oneDNN is switched off for it: on x86 CPUs its float16 depthwise convolution took minutes to
    generate a kernel for the Gaussian, and torch's own kernels take milliseconds.
    """
    from ec_export.canny_onnx import CannyFromHoleMask

    c = job.canny
    module = CannyFromHoleMask(c["sigma"], c["low"], c["high"], c["iterations"])
    flipped = 0
    with torch.no_grad(), _without_onednn():
        for feed in job.feeds["canny"]:
            gray, mask = torch.from_numpy(feed["gray"]), torch.from_numpy(feed["mask"])
            ref = module.float()(gray, mask)
            half = module.half()(gray.half(), mask.half()).float()
            flipped += int((ref != half).sum())
    return flipped


def _keep_fp32_copy(job, kind: str, precision: str, why: str) -> None:
    """Write ``kind.<precision>.onnx`` as the FP32 graph (the variant keeps FP32 on purpose)."""
    model = onnx.load(str(job.path(kind, "fp32")))
    set_metadata(model, {"ec.precision": "fp32", "ec.note": why})
    onnx.save(model, str(job.record(kind, precision)))
    job.notes[f"{kind}.{precision}"] = why


def write_fp16(job) -> None:
    """FP16 variants: Canny stays FP32 if FP16 flips edge pixels; generators must reach the PSNR gate."""
    from ec_export.fp16 import convert_to_fp16

    flipped = _canny_fp16_flips(job)
    why = None
    if flipped:
        why = (f"in FP16 arithmetic Canny flips {flipped} edge pixels on the accuracy photos (thresholds, NMS "
               "and hysteresis are sensitive to FP16 rounding); kept FP32")
    else:
        try:
            onnx.save(convert_to_fp16(onnx.load(str(job.path("canny", "fp32")))), str(job.record("canny", "fp16")))
        except ExportError as exc:
            why = f"the FP16 converter cannot convert the Canny graph ({str(exc).splitlines()[0][:160]}); kept FP32"
    canny_fp32 = why is not None
    if canny_fp32:
        job.sessions.pop(("canny", "fp16"), None)
        _keep_fp32_copy(job, "canny", "fp16", why)
    job.accuracy["fp16"] = {"measured_with": _measured_with(job),
                            "models": {"canny": {"flipped_edge_pixels": flipped, "kept_fp32": canny_fp32}}}
    for kind in ("edge", "inpaint", "pipeline"):
        if kind not in job.models:
            continue
        fp32 = onnx.load(str(job.path(kind, "fp32")))
        nodes = _canny_node_names(fp32) if kind == "pipeline" and canny_fp32 else []
        extra: list[str] = []
        for attempt in range(len(FP16_FALLBACK_OPS) + 1):
            model = convert_to_fp16(fp32, extra_block_ops=extra, node_block_list=nodes)
            onnx.save(model, str(job.record(kind, "fp16")))
            job.sessions.pop((kind, "fp16"), None)
            drift = _drift(job, kind, "fp16")
            if drift["psnr_db"] >= FP16_MIN_PSNR_DB or attempt == len(FP16_FALLBACK_OPS):
                break
            extra.append(FP16_FALLBACK_OPS[attempt])
        if drift["psnr_db"] < FP16_MIN_PSNR_DB:
            raise ExportError(f"{kind}.fp16.onnx reaches only {drift['psnr_db']:.1f} dB PSNR against FP32 "
                              f"(gate {FP16_MIN_PSNR_DB} dB) even with {', '.join(extra)} kept in FP32")
        job.accuracy["fp16"]["models"][kind] = {**drift, "extra_fp32_ops": extra}
        if kind == "pipeline":
            job.accuracy["fp16"]["models"][kind]["edge_pixels_changed_outside_holes"] = sum(
                int(np.count_nonzero((_run(job, kind, "fp32", f)[1] != _run(job, kind, "fp16", f)[1]) & (f["mask"] == 0)))
                for f in job.feeds[kind])
    _summarise(job.accuracy["fp16"])


def write_int8(job, calib_images, method: str) -> None:
    """INT8 Q/DQ variants calibrated on ``calib_images`` with procedural holes; Canny is not quantized."""
    from ec_export.int8 import convtranspose_per_channel_ok, quantize_int8

    samples = [to_nchw(img, m) for img, m in zip(calib_images, holes_for(calib_images, seed=0))]
    calib = _stage_feeds(job, samples, "pipeline" in job.models)
    _keep_fp32_copy(job, "canny", "int8", "Canny is not quantized: its thresholds and hysteresis need exact "
                                          "float arithmetic, and it is a small share of the compute")
    per_channel = True
    job.accuracy["int8"] = {"measured_with": _measured_with(job), "models": {},
                            "gate_note": "the >= 30 dB gate applies to trained weights"}
    for kind in ("edge", "inpaint", "pipeline"):
        if kind not in job.models:
            continue
        fp32_path, out_path = job.path(kind, "fp32"), job.record(kind, "int8")
        exclude = _canny_node_names(onnx.load(str(fp32_path))) if kind == "pipeline" else []
        quantize_int8(fp32_path, out_path, calib[kind], method=method, convtranspose_per_channel=per_channel,
                      exclude_nodes=exclude)
        if kind == "edge":
            ok, detail = convtranspose_per_channel_ok(out_path)
            job.notes["int8.convtranspose_per_channel"] = detail
            if not ok:
                per_channel = False
                quantize_int8(fp32_path, out_path, calib[kind], method=method, convtranspose_per_channel=False)
        job.sessions.pop((kind, "int8"), None)
        job.accuracy["int8"]["models"][kind] = _drift(job, kind, "int8")
    job.accuracy["int8"]["convtranspose_weights"] = "per-channel (axis 1)" if per_channel else "per-tensor"
    job.accuracy["int8"]["target"] = "tensorrt (symmetric int8 Q/DQ, S8S8)"
    _summarise(job.accuracy["int8"])
    _write_int8_cpu(job, calib)


def _write_int8_cpu(job, calib: dict) -> None:
    """The U8S8 variant ONNX Runtime's CPU provider runs fast (``*.int8_cpu.onnx``), same calibration photos."""
    from ec_export.int8_cpu import SETTINGS, quantize_int8_cpu

    job.accuracy[INT8_CPU] = {"measured_with": _measured_with(job), "models": {},
                              "target": "onnxruntime CPU provider (uint8 activations, int8 weights, U8S8)",
                              "settings": SETTINGS}
    for kind in ("edge", "inpaint", "pipeline"):
        if kind not in job.models:
            continue
        fp32_path = job.path(kind, "fp32")
        exclude = _canny_node_names(onnx.load(str(fp32_path))) if kind == "pipeline" else []
        quantize_int8_cpu(fp32_path, job.record(kind, INT8_CPU), calib[kind], exclude_nodes=exclude)
        job.sessions.pop((kind, INT8_CPU), None)
        job.accuracy[INT8_CPU]["models"][kind] = _drift(job, kind, INT8_CPU)
    _summarise(job.accuracy[INT8_CPU])


def _measured_with(job) -> str:
    return f"onnxruntime CPU, {len(job.samples)} photos of {job.accuracy_size} px with free-form holes"


def _summarise(entry: dict) -> None:
    gen = [m for m in entry["models"].values() if "psnr_db" in m]
    entry["psnr_db"] = min(m["psnr_db"] for m in gen)
    entry["max_abs_diff"] = max(m["max_abs_diff"] for m in gen)
