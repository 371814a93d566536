"""The torch-free engine builder: shapes, parse failures, sidecar, timing cache, no torch import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ec_export.engine import build_engine, parse_shapes, precision_from_name
from ec_export.errors import ExportError

SMALL = ((1, 32, 32), (1, 64, 64), (2, 64, 64))

BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'torchvision', 'onnx', 'onnxruntime'):
            raise ImportError(name + ' is blocked')
sys.meta_path.insert(0, _Block())
"""


def _tiny_onnx(path, op="Relu", domain=""):
    """A one-node NCHW graph (3 channels, dynamic N/H/W) written with onnx.helper."""
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])
    node = helper.make_node(op, ["x"], ["y"], name="the_node", domain=domain)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    save(helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets), str(path))
    return path


def test_parse_shapes():
    assert parse_shapes("1x256x256,1x512x512,4x1024x1024") == ((1, 256, 256), (1, 512, 512), (4, 1024, 1024))
    with pytest.raises(ExportError, match="multiples of 4"):
        parse_shapes("1x256x256,1x510x512,4x1024x1024")
    with pytest.raises(ExportError, match="MIN,OPT,MAX"):
        parse_shapes("1x256x256")
    with pytest.raises(ExportError, match="min <= opt <= max"):
        parse_shapes("1x512x512,1x256x256,1x1024x1024")
    with pytest.raises(ExportError, match="NxHxW"):
        parse_shapes("1x256,1x512x512,4x1024x1024")


def test_precision_from_name():
    assert [precision_from_name(n) for n in ("edge.onnx", "edge.fp16.onnx", "x/inpaint.int8.onnx")] == \
        ["fp32", "fp16", "int8"]


@pytest.mark.trt
def test_builds_engine_with_sidecar_and_timing_cache(tmp_path):
    onnx_path = _tiny_onnx(tmp_path / "tiny.fp16.onnx")
    cache = tmp_path / "timing.cache"
    engine = build_engine(onnx_path, shapes=SMALL, workspace_mb=64, timing_cache=cache)
    assert engine == tmp_path / "tiny.fp16.engine" and engine.stat().st_size > 0
    assert cache.is_file()
    side = json.loads((tmp_path / "tiny.fp16.engine.json").read_text())
    assert side["precision"] == "fp16"
    assert side["profile"] == {"min": [1, 32, 32], "opt": [1, 64, 64], "max": [2, 64, 64]}
    # the cache written by the first build is loaded by the second
    build_engine(onnx_path, tmp_path / "again.engine", shapes=SMALL, workspace_mb=64, timing_cache=cache)
    assert (tmp_path / "again.engine.json").is_file()


@pytest.mark.trt
def test_parse_failure_names_the_node(tmp_path):
    onnx_path = _tiny_onnx(tmp_path / "broken.onnx", op="NoSuchOp", domain="com.example")
    with pytest.raises(ExportError, match=r"could not parse .*\n.*node the_node \(NoSuchOp\)"):
        build_engine(onnx_path, shapes=SMALL)
    assert not (tmp_path / "broken.engine").exists()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf")
    with pytest.raises(ExportError, match="could not parse"):
        build_engine(garbage, shapes=SMALL)


def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(ExportError, match="not found"):
        build_engine(tmp_path / "missing.onnx", shapes=SMALL)
    onnx_path = _tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(ExportError, match="multiples of 4"):
        build_engine(onnx_path, shapes=((1, 30, 32), (1, 64, 64), (1, 64, 64)))


def test_engine_module_imports_without_torch_or_onnx():
    code = BLOCK_TORCH + "import ec_export.engine\nprint('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
