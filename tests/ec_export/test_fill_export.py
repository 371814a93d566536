"""Export of the ``lite-fill`` variant: its coarse fill travels inside the inpaint graph.

The ONNX I/O contract is unchanged (``image, edges, mask -> image_out``), so the runtime, the
engines and the Triton repositories take these files as they take any other.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ec_export.exporter import export_models
from ec_export.wrappers import InpaintStage, prepare_generator
from ec_train.coarse_fill import coarse_fill
from ec_train.registry import create_model
from ec_train.samples import sample_photo
from tests.helpers import photo_and_mask, psnr, to_tensors

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fill_export(tmp_path_factory):
    torch.manual_seed(0)
    edge, inpaint = create_model("lite-fill", "edge"), create_model("lite-fill", "inpaint")
    with torch.no_grad():  # a trained-looking correction instead of the all-zero start
        inpaint.decoder[-1].weight.normal_(0, 0.002)
    out = tmp_path_factory.mktemp("fill") / "export"
    calib = [sample_photo(name, 64) for name in ("chelsea", "rocket")]
    info = export_models(edge, inpaint, out, precisions=("fp16", "int8"), fused=True, calib_images=calib,
                         calib_size=64, calib_method="minmax", accuracy_size=64, canny={"iterations": 16},
                         progress=False)
    return inpaint, out, info


def _run(path, feed):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


@pytest.mark.parametrize("size", [(128, 128), (100, 76)])
def test_fill_graph_matches_torch(fill_export, size):
    inpaint, out, _ = fill_export
    img, mask = photo_and_mask("astronaut", 128, seed=1, hole_ratio=(0.3, 0.5))
    image, m = to_tensors(img[: size[0], : size[1]], mask[: size[0], : size[1]])
    edges = (torch.rand_like(m) > 0.9).float()
    with torch.no_grad():
        want = InpaintStage(prepare_generator(inpaint))(image, edges, m).numpy()
    got = _run(out / "inpaint.onnx", {"image": image.numpy(), "edges": edges.numpy(), "mask": m.numpy()})[0]
    assert np.abs(got - want).max() <= 1e-4
    hole = m.numpy().astype(bool).repeat(3, axis=1)
    fill = coarse_fill(image * (1 - m) + m, 1 - m).numpy()
    assert 0.001 < np.abs(got - fill)[hole].mean() < 0.2  # the correction is there, and small


def test_fill_variants_keep_their_accuracy_gates(fill_export):
    _, out, info = fill_export
    assert info["accuracy"]["fp16"]["psnr_db"] >= 45
    assert info["accuracy"]["int8"]["psnr_db"] >= 30 and info["accuracy"]["int8_cpu"]["psnr_db"] >= 30
    # the CPU INT8 file quantizes convolutions only: the fill's pooling and resizing stay float
    model = onnx.load(str(out / info["models"]["inpaint"]["int8_cpu"]))
    quantized_inputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        if node.op_type in ("AveragePool", "Resize"):
            assert not quantized_inputs & set(node.input), node.name
    assert json.loads((out / "export.json").read_text())["models"]["inpaint"]["fp32"] == "inpaint.onnx"


@pytest.mark.trt
def test_tensorrt_builds_the_fill_graphs(fill_export, tmp_path):
    from ec_export.engine import build_engine

    _, out, info = fill_export
    for precision in ("fp32", "fp16", "int8"):
        name = info["models"]["inpaint"][precision]
        engine = build_engine(out / name, tmp_path / name.replace(".onnx", ".engine"),
                              shapes=((1, 64, 64), (1, 128, 128), (2, 128, 128)), workspace_mb=256)
        assert engine.stat().st_size > 0
