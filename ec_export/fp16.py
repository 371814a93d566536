"""FP16 variants of the fp32 ONNX files, with onnxconverter-common's maintained converter.

What stays FP32 (through Casts the converter inserts):

* the graph inputs and outputs (``keep_io_types``): the I/O contract is float32 everywhere;
* ``InstanceNormalization``: its variance overflows FP16 on real activations;
* the converter's own default block list (ops without FP16 kernels);
* any op type the caller adds after an accuracy check (``extra_block_ops``).

TensorRT builds these files strongly typed, so the precision of every layer is the one written here.
"""

from __future__ import annotations

from typing import Iterable

import warnings

import onnx
import onnx.helper

from ec_export.errors import ExportError
from ec_export.onnx_io import set_metadata

ALWAYS_FP32_OPS = ("InstanceNormalization",)


def fp32_op_block_list(extra_block_ops: Iterable[str] = ()) -> list[str]:
    """The converter's default block list plus InstanceNormalization and ``extra_block_ops``."""
    from onnxconverter_common import float16

    ops = list(float16.DEFAULT_OP_BLOCK_LIST)
    for op in (*ALWAYS_FP32_OPS, *extra_block_ops):
        if op not in ops:
            ops.append(op)
    return ops


def unshare_initializers(model: onnx.ModelProto, block_ops: Iterable[str],
                         block_nodes: Iterable[str] = ()) -> onnx.ModelProto:
    """Give blocked nodes (``block_ops`` types, ``block_nodes`` names) private copies of shared initializers.

    onnxslim merges identical constants, so a zero conv bias and a zero InstanceNormalization
    bias become one tensor; the converter would then need it in FP16 and FP32 at once.
    """
    block_ops, block_nodes = set(block_ops), set(block_nodes)

    def blocked(node: onnx.NodeProto) -> bool:
        return node.op_type in block_ops or node.name in block_nodes

    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, set[bool]] = {}
    for node in model.graph.node:
        for name in node.input:
            if name in inits:
                users.setdefault(name, set()).add(blocked(node))
    shared = {name for name, kinds in users.items() if kinds == {True, False}}
    for name in sorted(shared):
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[name])
        copy.name = f"{name}__fp32"
        model.graph.initializer.append(copy)
    for node in model.graph.node:
        if blocked(node):
            for k, name in enumerate(node.input):
                if name in shared:
                    node.input[k] = f"{name}__fp32"
    return model


def detach_consumed_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Route graph outputs that other nodes also consume through an Identity.

    With ``keep_io_types`` the converter casts such an output back to float32 in place, and the
    nodes consuming it then mix float32 and float16 (``edges_raw`` feeds the edge merge).
    """
    outputs = {o.name for o in model.graph.output}
    consumed = {name for node in model.graph.node for name in node.input} & outputs
    for name in sorted(consumed):
        inner = f"{name}__inner"
        for node in model.graph.node:
            node.output[:] = [inner if o == name else o for o in node.output]
            node.input[:] = [inner if i == name else i for i in node.input]
        model.graph.node.append(onnx.helper.make_node("Identity", [inner], [name], name=f"{name}__output"))
    return model


def convert_to_fp16(model: onnx.ModelProto, *, extra_block_ops: Iterable[str] = (),
                    node_block_list: Iterable[str] = ()) -> onnx.ModelProto:
    """An FP16 copy of ``model`` with float32 I/O and the FP32 islands listed in this module.

    ``node_block_list`` names individual nodes to keep FP32. The result passes ``onnx.checker``
    (full check) and carries ``ec.precision = fp16`` plus ``ec.fp32_ops`` in its metadata.
    """
    from onnxconverter_common import float16

    block_ops = fp32_op_block_list(extra_block_ops)
    node_block_list = list(node_block_list)
    model = detach_consumed_outputs(unshare_initializers(_copy(model), block_ops, node_block_list))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "float32 number ... truncated": the accuracy check reports the effect
            fp16 = float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=block_ops, node_block_list=node_block_list,
                disable_shape_infer=False)
    except Exception as exc:
        raise ExportError(f"FP16 conversion failed: {exc}") from exc
    _retarget_float_casts(fp16, model, set(block_ops), set(node_block_list))
    # The converter leaves stale float32 value_info on the outputs of blocked nodes (now Casts);
    # drop the intermediate annotations and let shape inference recompute them.
    del fp16.graph.value_info[:]
    used = sorted({n.op_type for n in model.graph.node} & set(block_ops))
    set_metadata(fp16, {"ec.precision": "fp16", "ec.fp32_ops": used})
    try:
        fp16 = onnx.shape_inference.infer_shapes(fp16, strict_mode=True)
        _drop_round_trip_casts(fp16)
        onnx.checker.check_model(fp16, full_check=True)
    except Exception as exc:  # InferenceError or ValidationError: the converted graph is inconsistent
        raise ExportError(f"the FP16 model failed onnx.checker: {str(exc).splitlines()[0]}") from exc
    return fp16


def _retarget_float_casts(fp16: onnx.ModelProto, original: onnx.ModelProto, block_ops: set[str],
                          block_nodes: set[str]) -> None:
    """Make the graph's own ``Cast(to=float)`` nodes (bool -> float masks) cast to float16.

    The converter leaves them casting to float32, so their float32 output meets float16 tensors.
    Casts it inserted itself, and Casts feeding blocked nodes, are left alone.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in fp16.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    own = {n.name for n in original.graph.node if n.op_type == "Cast"} - block_nodes
    for node in fp16.graph.node:
        if node.name not in own:
            continue
        to = next(a for a in node.attribute if a.name == "to")
        users = consumers.get(node.output[0], [])
        if to.i == onnx.TensorProto.FLOAT and not any(u.op_type in block_ops or u.name in block_nodes for u in users):
            to.i = onnx.TensorProto.FLOAT16


def _drop_round_trip_casts(model: onnx.ModelProto) -> None:
    """Remove float32 -> float16 -> float32 Cast pairs between two FP32 nodes.

    The converter casts every blocked node's output to float16 and back for a blocked consumer,
    which rounds values inside an FP32 island (the Canny of the fused pipeline) to float16.
    """
    dtypes = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input)}
    dtypes.update({i.name: i.data_type for i in model.graph.initializer})
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def cast_to(node: onnx.NodeProto) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None

    graph_outputs = {o.name for o in model.graph.output}
    rename: dict[str, str] = {}
    removed: set[int] = set()
    for node in model.graph.node:
        if cast_to(node) != onnx.TensorProto.FLOAT16 or dtypes.get(node.input[0]) != onnx.TensorProto.FLOAT:
            continue
        users = consumers.get(node.output[0], [])
        for user in users:
            if cast_to(user) == onnx.TensorProto.FLOAT and user.output[0] not in graph_outputs:
                rename[user.output[0]] = node.input[0]
                removed.add(id(user))
        if users and all(id(u) in removed for u in users) and node.output[0] not in graph_outputs:
            removed.add(id(node))
    if not removed:
        return
    kept = [n for n in model.graph.node if id(n) not in removed]
    for node in kept:
        node.input[:] = [rename.get(i, i) for i in node.input]
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out
