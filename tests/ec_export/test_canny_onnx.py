"""canny.onnx: contract, metadata, ORT agreement with the torch module at several sizes, TensorRT build."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ec_export.canny_onnx import CANNY_IO, CannyFromHoleMask, export_canny
from ec_export.errors import ExportError
from ec_train.canny import DEFAULT_ITERATIONS, Canny
from tests.helpers import photo_and_mask


@pytest.fixture(scope="module")
def canny_onnx(tmp_path_factory):
    return export_canny(tmp_path_factory.mktemp("canny") / "canny.onnx")


@pytest.fixture(scope="module")
def session(canny_onnx):
    import onnxruntime as ort

    return ort.InferenceSession(str(canny_onnx), providers=["CPUExecutionProvider"])


def _photo_batch(names, size):
    """(gray N,1,H,W float32, hole mask N,1,H,W float32) from real photos with free-form holes."""
    from skimage.color import rgb2gray

    grays, holes = [], []
    for seed, name in enumerate(names):
        img, hole = photo_and_mask(name, size, seed=seed)
        grays.append(rgb2gray(img).astype(np.float32))
        holes.append(hole.astype(np.float32))
    return np.stack(grays)[:, None], np.stack(holes)[:, None]


def test_checker_contract_and_metadata(canny_onnx):
    import onnx

    from ec_export.onnx_io import get_metadata

    model = onnx.load(str(canny_onnx))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["gray", "mask"]
    assert [o.name for o in model.graph.output] == ["edges"]
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert dims[1].dim_value == 1
        assert all(d.dim_param and not d.dim_value for d in (dims[0], dims[2], dims[3])), f"{value.name} not dynamic"
    meta = get_metadata(model)
    assert meta["ec.kind"] == "canny" and meta["ec.precision"] == "fp32" and meta["ec.toolkit_version"]
    assert json.loads(meta["ec.io"]) == CANNY_IO
    assert json.loads(meta["ec.canny"]) == {"sigma": 2.0, "low": 0.1, "high": 0.2, "iterations": DEFAULT_ITERATIONS}
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MaxPool") == DEFAULT_ITERATIONS + 1  # hysteresis rounds + the mask erosion
    assert len(ops) <= 2 * DEFAULT_ITERATIONS + 100, f"unexpectedly large graph: {len(ops)} nodes"


@pytest.mark.parametrize("size", [(64, 96), (128, 128)])
def test_onnxruntime_agrees_with_torch_at_several_sizes(session, size):
    from skimage.transform import resize

    gray, hole = _photo_batch(("astronaut", "coffee"), 128)
    h, w = size
    gray = np.stack([resize(g[0], (h, w), anti_aliasing=True) for g in gray])[:, None].astype(np.float32)
    hole = np.stack([resize(m[0], (h, w), order=0) for m in hole])[:, None].astype(np.float32)
    (edges,) = session.run(None, {"gray": gray, "mask": hole})
    expected = Canny()(torch.from_numpy(gray), torch.from_numpy(1 - hole)).numpy()
    assert edges.shape == (2, 1, h, w) and set(np.unique(edges).tolist()) <= {0.0, 1.0}
    assert expected.sum() > 100
    agreement = float((edges == expected).mean())
    assert agreement >= 0.999, f"ORT and torch agree on only {agreement:.5%} of pixels at {h}x{w}"


def test_onnx_matches_skimage_with_hole_mask(session):
    from skimage.feature import canny

    gray, hole = _photo_batch(("chelsea",), 128)
    (edges,) = session.run(None, {"gray": gray, "mask": hole})
    ref = canny(gray[0, 0].astype(np.float64), sigma=2, mask=hole[0, 0] < 0.5)
    pred = edges[0, 0] > 0.5
    f1 = 2 * float((pred & ref).sum()) / float(pred.sum() + ref.sum())
    assert f1 >= 0.97


def test_wrapper_rejects_training_only_settings():
    with pytest.raises(ExportError, match="fixed sigma"):
        CannyFromHoleMask(sigma=0)
    with pytest.raises(ExportError, match="fixed sigma"):
        CannyFromHoleMask(sigma=-1)
    with pytest.raises(ExportError, match="iterations"):
        CannyFromHoleMask(iterations=2.5)


@pytest.mark.trt
def test_tensorrt_parses_and_builds_with_a_dynamic_profile(canny_onnx, tmp_path):
    from ec_export.engine import build_engine
    from ec_runtime.tensorrt_support import import_tensorrt

    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(canny_onnx.read_bytes()) and parser.num_errors == 0
    assert [tuple(network.get_input(i).shape) for i in range(2)] == [(-1, 1, -1, -1)] * 2

    shapes = ((1, 32, 32), (1, 128, 128), (2, 256, 256))
    # build_engine raises ExportError listing the parser's errors if there is any.
    engine = build_engine(canny_onnx, tmp_path / "canny.engine", shapes=shapes, workspace_mb=256)
    assert engine.stat().st_size > 0
    sidecar = json.loads(engine.with_name(engine.name + ".json").read_text())
    assert sidecar["profile"] == {"min": [1, 32, 32], "opt": [1, 128, 128], "max": [2, 256, 256]}
    assert sidecar["precision"] == "fp32"


def test_fp16_flip_count_finishes_at_the_default_settings():
    """``ec-export --fp16`` counts Canny's FP16 flips with torch in float16. On x86 CPUs oneDNN's
    float16 depthwise convolution spent minutes generating its kernel at the default Canny settings
    (the export looked hung); the count must take seconds."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import types, numpy as np
        from ec_export.canny_onnx import CannyFromHoleMask
        from ec_export.variants import _canny_fp16_flips
        c = CannyFromHoleMask()
        rng = np.random.default_rng(0)
        feed = {"gray": rng.random((1, 1, 32, 32), dtype=np.float32),
                "mask": (rng.random((1, 1, 32, 32)) > 0.8).astype(np.float32)}
        job = types.SimpleNamespace(canny=c.settings(), feeds={"canny": [feed]})
        print(_canny_fp16_flips(job))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) >= 0
