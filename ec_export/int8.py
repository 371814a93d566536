"""INT8 variants with explicit Q/DQ that TensorRT accepts, calibrated on real images with holes.

ONNX Runtime's ``quantize_static`` writes the Q/DQ pairs. The settings follow what TensorRT
accepts (DESIGN §5): QDQ format, symmetric int8 activations (per tensor) and weights (per output
channel), biases left in float (an int32 bias DequantizeLinear is rejected), and only Conv and
ConvTranspose quantized, so InstanceNormalization, Pad and the elementwise tail keep float inputs.

ConvTranspose stores its output channels on weight axis 1, where ONNX Runtime puts the per-channel
scales. :func:`convtranspose_per_channel_ok` asks the TensorRT parser whether it accepts that; if
it does not, ConvTranspose weights are quantized per tensor instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx

from ec_export.errors import ExportError
from ec_export.onnx_io import set_metadata

CALIB_METHODS = ("entropy", "percentile", "minmax")
QUANTIZED_OPS = ("Conv", "ConvTranspose")
Feed = Mapping[str, np.ndarray]


class _FeedReader:
    """An onnxruntime ``CalibrationDataReader`` over a list of feeds."""

    def __init__(self, feeds: Sequence[Feed]):
        self._feeds = [{k: np.ascontiguousarray(v, np.float32) for k, v in f.items()} for f in feeds]
        self._it = iter(self._feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._feeds)


def _calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    methods = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
               "minmax": CalibrationMethod.MinMax}
    if name not in methods:
        raise ExportError(f"unknown calibration method {name!r}; choose one of {', '.join(CALIB_METHODS)}")
    return methods[name]


def quantize_int8(fp32_path: str | Path, out_path: str | Path, feeds: Sequence[Feed], *,
                  method: str = "entropy", convtranspose_per_channel: bool = True,
                  exclude_nodes: Iterable[str] = ()) -> onnx.ModelProto:
    """Write an INT8 Q/DQ copy of ``fp32_path`` calibrated on ``feeds`` (dicts of input arrays).

    ``convtranspose_per_channel=False`` quantizes ConvTranspose weights per tensor (the fallback
    for a TensorRT that rejects per-channel scales on axis 1). Returns the saved model, which
    carries ``ec.precision = int8`` and ``ec.int8`` (settings) in its metadata. ``exclude_nodes``
    names nodes to leave in float (the Canny part of the fused pipeline).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if not feeds:
        raise ExportError("INT8 calibration needs at least one calibration sample; the calibration set is empty")
    calibrate_method = _calibration_method(method)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = onnx.load(str(fp32_path))
    exclude_nodes = list(exclude_nodes)
    per_tensor_nodes = [] if convtranspose_per_channel else [
        n.name for n in model.graph.node if n.op_type == "ConvTranspose" and n.name not in exclude_nodes]
    options = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
               # Conv outputs feed InstanceNormalization and the float tail: no Q/DQ there.
               "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)}
    if method == "percentile":
        options["CalibPercentile"] = 99.999
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        staged = Path(tmp) / "q.onnx"
        reader, cache = _FeedReader(feeds), None
        try:
            if method == "entropy":
                cache = _entropy_ranges(fp32_path, reader, Path(tmp))
                reader = None if cache is not None else reader
            quantize_static(str(fp32_path), str(staged), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True, reduce_range=False,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=per_tensor_nodes + exclude_nodes, calibrate_method=calibrate_method,
                            extra_options=options, **({"calibration_cache_path": str(cache)} if cache else {}))
            if per_tensor_nodes:
                reader = _FeedReader(feeds)
                quantize_static(str(staged), str(staged), reader, quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=["ConvTranspose"], nodes_to_quantize=per_tensor_nodes,
                                per_channel=False, extra_options=options)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"INT8 quantization of {fp32_path.name} failed: {exc}") from exc
        qmodel = onnx.load(str(staged))
    check_trt_compatible_qdq(qmodel)
    set_metadata(qmodel, {p.key: p.value for p in model.metadata_props})
    set_metadata(qmodel, {"ec.precision": "int8", "ec.int8": {
        "calibration_method": method, "calibration_samples": len(feeds), "activations": "int8 symmetric per-tensor",
        "weights": "int8 symmetric per-channel", "bias": "float (not quantized)",
        "convtranspose_weights": "per-channel (axis 1)" if convtranspose_per_channel else "per-tensor",
        "quantized_ops": list(QUANTIZED_OPS)}})
    onnx.save(qmodel, str(out_path))
    return qmodel


def _entropy_ranges(fp32_path: Path, reader: _FeedReader, tmp: Path) -> Path | None:
    """KL-divergence (entropy) activation ranges: 512 histogram bins searched down to 128 quantized bins.

    ``quantize_static`` builds its entropy calibrator with 128 histogram bins and 128 quantized
    bins, which leaves the threshold search a single candidate (the full range: min-max). The
    ranges are computed here and handed over as a calibration cache. 512 bins (TensorRT's legacy
    calibrator used 2048) keep onnxruntime's pure-Python search well under a second per tensor.
    Returns None where this onnxruntime has no calibration cache support (its own calibrator runs).
    """
    import inspect

    from onnxruntime.quantization import CalibrationMethod, create_calibrator, quantize_static

    try:
        from onnxruntime.quantization import save_tensors_data
    except ImportError:
        return None
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        return None
    calibrator = create_calibrator(fp32_path, list(QUANTIZED_OPS), augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"symmetric": True, "num_bins": 512, "num_quantized_bins": 128})
    calibrator.collect_data(reader)
    cache = tmp / "calibration.json"
    save_tensors_data(calibrator.compute_data(), cache)
    reader.rewind()
    return cache


def check_trt_compatible_qdq(model: onnx.ModelProto) -> None:
    """Raise :class:`ExportError` unless every Q/DQ is int8, symmetric, and away from InstanceNorm/Pad."""
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) > 2 and node.input[2] in inits:
            zp = onnx.numpy_helper.to_array(inits[node.input[2]])
            if zp.dtype != np.int8 or np.any(zp != 0):
                raise ExportError(f"{node.name}: zero point must be int8 0 for TensorRT, got {zp.dtype} {zp.ravel()[:4]}")
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(inits[node.input[0]].data_type)
            if dtype != np.int8:
                raise ExportError(f"{node.name}: DequantizeLinear input {node.input[0]} is {dtype}, TensorRT needs int8")
        if node.op_type == "DequantizeLinear":
            bad = [c for c in consumers.get(node.output[0], []) if c.op_type not in QUANTIZED_OPS]
            if bad:
                raise ExportError(f"{node.name} feeds {bad[0].op_type} {bad[0].name}; only Conv and ConvTranspose "
                                  f"may take quantized inputs (InstanceNorm, Pad and the rest stay float)")


def convtranspose_per_channel_ok(int8_path: str | Path, trt_module=None) -> tuple[bool, str]:
    """Ask the TensorRT parser whether it accepts the per-channel ConvTranspose Q/DQ of ``int8_path``.

    Returns ``(ok, detail)``; ``(True, "no TensorRT ...")`` when no TensorRT is installed (nothing
    to verify against: the default ONNX Runtime / ModelOpt layout is kept).
    """
    from ec_runtime.errors import MissingDependencyError
    from ec_runtime.tensorrt_support import import_tensorrt

    try:
        trt = trt_module if trt_module is not None else import_tensorrt()
    except MissingDependencyError:
        return True, "no TensorRT installed; not verified"
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    path = Path(int8_path)
    if parser.parse(path.read_bytes(), str(path)) and parser.num_errors == 0:
        return True, f"{trt.__name__} {trt.__version__} parser accepted per-channel ConvTranspose (axis 1)"
    errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
    return False, f"{trt.__name__} {trt.__version__} parser rejected it: {errors}"

