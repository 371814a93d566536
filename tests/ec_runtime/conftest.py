"""A small export directory (lite variant, random weights) shared by the runtime tests."""

from __future__ import annotations

import json

import pytest


def make_export(out_dir, seed: int = 0, precisions=("fp32",), tiny: bool = False):
    """Export the lite generators (+ Canny) into ``out_dir`` with ``ec_export.exporter.export_models``.

    ``tiny`` uses 1 residual block and 8 base channels instead (same graph structure, ~1/30 of
    the lite variant's compute) for tests that need many calls at a large size. Falls back to the
    contract's file layout written directly from the wrappers when the exporter is not available.
    """
    import torch

    from ec_train.networks import EdgeGenerator, InpaintGenerator
    from ec_train.registry import create_model

    torch.manual_seed(seed)
    if tiny:
        edge, inpaint = EdgeGenerator(1, True, 8), InpaintGenerator(1, 8)
    else:
        edge, inpaint = create_model("lite", "edge"), create_model("lite", "inpaint")
    try:
        from ec_export.exporter import export_models
    except ImportError:
        return _export_with_wrappers(edge, inpaint, out_dir)
    return export_models(edge, inpaint, out_dir, precisions=tuple(precisions), progress=False)


def _export_with_wrappers(edge, inpaint, out_dir):
    import torch

    from ec_export.canny_onnx import export_canny
    from ec_export.onnx_io import export_onnx
    from ec_export.wrappers import EDGE_IO, INPAINT_IO, EdgeStage, InpaintStage, prepare_generator

    out_dir.mkdir(parents=True, exist_ok=True)
    export_canny(out_dir / "canny.onnx")
    x1, x3 = torch.rand(1, 1, 64, 64), torch.rand(1, 3, 64, 64)
    m = (torch.rand(1, 1, 64, 64) > 0.7).float()
    export_onnx(EdgeStage(prepare_generator(edge)), (x1, x1, m), out_dir / "edge.onnx", **EDGE_IO_NAMES(EDGE_IO))
    export_onnx(InpaintStage(prepare_generator(inpaint)), (x3, x1, m), out_dir / "inpaint.onnx",
                **EDGE_IO_NAMES(INPAINT_IO))
    manifest = {"format": "ec-deploy/export/v1",
                "models": {k: {"fp32": f"{k}.onnx"} for k in ("canny", "edge", "inpaint")}}
    (out_dir / "export.json").write_text(json.dumps(manifest))
    return manifest


def EDGE_IO_NAMES(io):  # noqa: N802 - adapter from the IO dicts to export_onnx keywords
    return {"input_names": io["inputs"], "output_names": io["outputs"]}


@pytest.fixture(scope="session")
def lite_export(tmp_path_factory):
    """Path of an fp32 export directory of the lite variant (random weights, seed 0)."""
    out = tmp_path_factory.mktemp("lite_export")
    make_export(out)
    return out


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """Path of an fp32 export directory of a tiny architecture (1 block, 8 channels)."""
    out = tmp_path_factory.mktemp("tiny_export")
    make_export(out, tiny=True)
    return out


@pytest.fixture(scope="session")
def lite_models(lite_export):
    """The (edge, inpaint) torch generators that ``lite_export`` was made from."""
    import torch

    from ec_train.registry import create_model

    torch.manual_seed(0)
    return create_model("lite", "edge"), create_model("lite", "inpaint")
