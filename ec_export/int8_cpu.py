"""The INT8 variant for ONNX Runtime on CPUs: uint8 activations, int8 weights (U8S8), QDQ format.

The TensorRT variant (:mod:`ec_export.int8`) is symmetric int8 everywhere (S8S8), which ONNX
Runtime's x86 kernels run slowly on AVX2 machines without VNNI. ONNX Runtime's fast path is U8S8:
asymmetric uint8 activations (per tensor) against symmetric int8 weights (per output channel),
which its QDQ optimizer fuses into ``QLinearConv``. Measured on the demo model at 512², batch 1
(edge / inpaint model alone, AMD EPYC Zen 3, ORT 1.32):

* U8S8 QDQ on Conv: 1.54-1.57x / 1.44x ORT FP32, 65.2 / 45.1 dB PSNR against FP32;
* the same in QOperator format: 1.59x / 1.41x, identical PSNR (a tie: QDQ is kept, the format
  ONNX Runtime recommends and every provider reads);
* ConvTranspose: ORT's CPU provider has no int8 kernel for it, so Q/DQ around it only adds rounding
  (61.9 dB instead of 65.2 on the edge model, no faster), and in float it was 45% of the quantized
  edge model's time. The first decoder ConvTranspose (4x4, stride 2) is therefore rewritten as the
  equivalent 3x3 Conv with 4x the output channels followed by DepthToSpace
  (:func:`subpixel_convtranspose`; 2.25x the multiply-adds, but int8) and quantized. The last,
  full-resolution one stays float (:func:`full_resolution_convtranspose`). Inpaint model, 512² b1,
  interleaved: none rewritten 1.30x ORT FP32 / 44.8 dB; first only 1.64x / 42.7 dB; both 1.37x / 36.4 dB;
* without the Q/DQ on each Conv output (so InstanceNorm would read the float Conv output): 1.03x,
  because the fusion into ``QLinearConv`` needs the quantized output. Those pairs stay; nothing else
  (InstanceNorm, ReLU, Add, the float tail) gets Q/DQ of its own.
* calibration: min-max ranges (percentile 99.999: 39.2 dB on the inpaint model, below min-max).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx

from ec_export.errors import ExportError
from ec_export.int8 import Feed, _FeedReader
from ec_export.onnx_io import set_metadata

CPU_QUANTIZED_OPS = ("Conv",)
CPU_CALIB_METHOD = "minmax"
OUTPUT_CONV_MAX_CHANNELS = 4  # Convs this narrow (the generators' RGB / edge output convs) stay float
SETTINGS = {"format": "QDQ (fused to QLinearConv by ONNX Runtime)", "calibration_method": CPU_CALIB_METHOD,
            "activations": "uint8 asymmetric per-tensor", "weights": "int8 symmetric per-channel",
            "bias": "int32", "quantized_ops": list(CPU_QUANTIZED_OPS),
            "convtranspose": "all but the full-resolution (fewest output channels) ConvTranspose rewritten as "
                             "Conv 3x3 (4x channels) + DepthToSpace and quantized; that one stays float",
            "float_ops": "the output convs (<= 4 channels), the full-resolution ConvTranspose, InstanceNormalization, "
                         "Pad, DepthToSpace, the tail"}


def quantize_int8_cpu(fp32_path: str | Path, out_path: str | Path, feeds: Sequence[Feed], *,
                      exclude_nodes: Iterable[str] = ()) -> onnx.ModelProto:
    """Write the U8S8 QDQ copy of ``fp32_path`` calibrated on ``feeds`` and return it.

    ``exclude_nodes`` stay float (the Canny part of the fused pipeline). The model carries
    ``ec.precision = int8``, ``ec.int8_target = onnxruntime-cpu`` and ``ec.int8`` (settings).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not feeds:
        raise ExportError("INT8 calibration needs at least one calibration sample; the calibration set is empty")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = onnx.load(str(fp32_path))
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        staged, source = Path(tmp) / "q.onnx", Path(tmp) / "fp32.onnx"
        rewritten, _ = subpixel_convtranspose(model, skip=full_resolution_convtranspose(model))
        onnx.save(_unshare_conv_initializers(rewritten), str(source))
        exclude_nodes = [*exclude_nodes, *output_convs(rewritten)]
        try:
            quantize_static(str(source), str(staged), _FeedReader(feeds), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(CPU_QUANTIZED_OPS), per_channel=True, reduce_range=False,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude_nodes), calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:
            raise ExportError(f"CPU INT8 quantization of {fp32_path.name} failed: {exc}") from exc
        qmodel = onnx.load(str(staged))
    check_cpu_qdq(qmodel)
    set_metadata(qmodel, {p.key: p.value for p in model.metadata_props})
    set_metadata(qmodel, {"ec.precision": "int8", "ec.int8_target": "onnxruntime-cpu",
                          "ec.int8": {**SETTINGS, "calibration_samples": len(feeds)}})
    onnx.save(qmodel, str(out_path))
    return qmodel


def _unshare_conv_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where every Conv owns its weight and bias initializers.

    Graph cleanup merges equal constants, so a Conv's all-zero bias can be the very tensor an
    InstanceNormalization uses as its B input; quantizing that bias to int32 would then feed the
    InstanceNorm through a DequantizeLinear too.
    """
    model = copy.deepcopy(model)
    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    for node in model.graph.node:
        if node.op_type not in CPU_QUANTIZED_OPS:
            continue
        for slot in range(1, len(node.input)):
            name = node.input[slot]
            if name in inits and users[name] > 1:
                own = onnx.TensorProto()
                own.CopyFrom(inits[name])
                own.name = f"{node.name or name}.input{slot}"
                model.graph.initializer.append(own)
                node.input[slot] = own.name
                users[name] -= 1
    return model


def check_cpu_qdq(model: onnx.ModelProto) -> None:
    """Raise :class:`ExportError` unless every Q/DQ pair sits on a Conv input or output.

    Activations must be uint8 and weights int8; a pair that touches no quantized Conv (around
    InstanceNorm, Pad, ConvTranspose, the tail) would only add rounding and time.
    """
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            zp = inits.get(node.input[2]) if len(node.input) > 2 else None
            if zp is None or onnx.helper.tensor_dtype_to_np_dtype(zp.data_type) != np.uint8:
                raise ExportError(f"{node.name}: CPU INT8 activations must be uint8")
            source = producers.get(node.input[0])
            targets = [c for dq in consumers.get(node.output[0], []) for c in consumers.get(dq.output[0], [])]
            if not (source is not None and source.op_type in CPU_QUANTIZED_OPS) and \
                    not (targets and all(t.op_type in CPU_QUANTIZED_OPS for t in targets)):
                kind = source.op_type if source is not None else "a graph input"
                raise ExportError(f"{node.name}: a Q/DQ pair after {kind} that feeds no quantized Conv")
        elif node.op_type == "DequantizeLinear" and node.input[0] in inits:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(inits[node.input[0]].data_type)
            users = consumers.get(node.output[0], [])
            if dtype not in (np.int8, np.int32) or any(u.op_type not in CPU_QUANTIZED_OPS for u in users):
                raise ExportError(f"{node.name}: {dtype} weight feeding {[u.op_type for u in users]}")


_TAPS = {0: (3, 1, None), 1: (None, 2, 0)}  # output phase -> ConvTranspose tap read at input offset -1, 0, +1


def _is_k4s2p1(node: onnx.NodeProto, inits: dict) -> bool:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    weight = inits.get(node.input[1])
    return (weight is not None and len(weight.dims) == 4 and list(weight.dims[2:]) == [4, 4]
            and list(attrs.get("strides", [1, 1])) == [2, 2] and list(attrs.get("pads", [0] * 4)) == [1, 1, 1, 1]
            and list(attrs.get("dilations", [1, 1])) == [1, 1] and attrs.get("group", 1) == 1
            and not any(attrs.get("output_padding", [])) and "output_shape" not in attrs
            and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def output_convs(model: onnx.ModelProto, max_channels: int = OUTPUT_CONV_MAX_CHANNELS) -> list[str]:
    """Convs with at most ``max_channels`` outputs: each generator's last 7x7 conv (1 or 3 channels).

    They stay float: ONNX Runtime's ``QLinearConv`` is slow for so few output channels (the edge
    model's last conv took 809 ms as QLinearConv against 355 ms in float at 512², 35% of the
    quantized model's time).
    """
    inits = {i.name: i for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits
            and inits[n.input[1]].dims[0] <= max_channels]


def full_resolution_convtranspose(model: onnx.ModelProto) -> list[str]:
    """The ConvTranspose nodes with the fewest output channels: each generator's last, full-resolution one.

    They stay float ConvTranspose in the CPU variant. Quantized, the last one cost the inpaint model
    6 dB (36.4 instead of 42.7 dB against FP32 on the demo weights) and saved no time (its 4x-channel
    Conv output is full-resolution data for DepthToSpace to move).
    """
    inits = {i.name: i for i in model.graph.initializer}
    widths = {n.name: inits[n.input[1]].dims[1] for n in model.graph.node
              if n.op_type == "ConvTranspose" and n.input[1] in inits}
    return [name for name, width in widths.items() if width == min(widths.values())]


def subpixel_convtranspose(model: onnx.ModelProto, skip: Iterable[str] = ()) -> tuple[onnx.ModelProto, int]:
    """Rewrite each 4x4 stride-2 ConvTranspose as a 3x3 Conv (4x the channels) + DepthToSpace.

    The two compute the same function (each output phase reads a 2x2 window of the input; the 3x3
    kernel holds zeros elsewhere). The Conv has 2.25x the multiply-adds but can be quantized, which
    ONNX Runtime's CPU provider cannot do for ConvTranspose. Returns (model, rewritten count).
    """
    from onnx import numpy_helper

    model = copy.deepcopy(model)
    inits = {i.name: i for i in model.graph.initializer}
    nodes, count = [], 0
    for node in model.graph.node:
        if node.op_type != "ConvTranspose" or node.name in skip or not _is_k4s2p1(node, inits):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])  # (Cin, Cout, 4, 4)
        cin, cout = w.shape[:2]
        kernel = np.zeros((cout, 2, 2, cin, 3, 3), w.dtype)
        for a in (0, 1):
            for b in (0, 1):
                for dy, ky in enumerate(_TAPS[a]):
                    for dx, kx in enumerate(_TAPS[b]):
                        if ky is not None and kx is not None:
                            kernel[:, a, b, :, dy, dx] = w[:, :, ky, kx].T
        base = node.name or node.output[0]
        weight = numpy_helper.from_array(kernel.reshape(cout * 4, cin, 3, 3), f"{base}.subpixel.weight")
        model.graph.initializer.append(weight)
        inputs = [node.input[0], weight.name]
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.from_array(np.repeat(numpy_helper.to_array(inits[node.input[2]]), 4),
                                           f"{base}.subpixel.bias")
            model.graph.initializer.append(bias)
            inputs.append(bias.name)
        phases = f"{base}.subpixel.phases"
        nodes.append(onnx.helper.make_node("Conv", inputs, [phases], name=f"{base}.subpixel.conv",
                                           kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(onnx.helper.make_node("DepthToSpace", [phases], list(node.output), name=f"{base}.subpixel.d2s",
                                           blocksize=2, mode="CRD"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model, count
