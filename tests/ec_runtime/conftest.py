"""A small export directory (lite variant, random weights) shared by the runtime tests."""

from __future__ import annotations

import pytest


def make_export(out_dir, seed: int = 0, precisions=("fp32",), tiny: bool = False):
    """Export the lite generators (+ Canny) into ``out_dir`` with ``ec_export.exporter.export_models``.

    ``tiny`` uses 1 residual block and 8 base channels instead (same graph structure, ~1/30 of
    the lite variant's compute) and 16 Canny hysteresis rounds, for tests that need many calls at
    a large size and compare nothing with skimage.
    """
    import torch

    from ec_export.exporter import export_models
    from ec_train.networks import EdgeGenerator, InpaintGenerator
    from ec_train.registry import create_model

    torch.manual_seed(seed)
    if tiny:
        edge, inpaint = EdgeGenerator(1, True, 8), InpaintGenerator(1, 8)
    else:
        edge, inpaint = create_model("lite", "edge"), create_model("lite", "inpaint")
    return export_models(edge, inpaint, out_dir, precisions=tuple(precisions), progress=False,
                         canny={"iterations": 16} if tiny else None, calib_size=64, accuracy_size=64)


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
