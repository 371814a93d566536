"""``canny.onnx``: the skimage-compatible Canny of :mod:`ec_train.canny` as an ONNX model.

Contract: inputs ``gray`` (N,1,H,W float in [0,1]) and ``mask`` (N,1,H,W, 1 = hole) -> output
``edges`` (N,1,H,W, values {0,1}), computed like ``skimage.feature.canny(gray, sigma, mask=1-mask)``.
Batch, height and width are dynamic (H, W >= 16). Sigma and thresholds are baked in as constants;
the hysteresis rounds are unrolled (MaxPool + Mul per round), which TensorRT parses and ONNX Runtime
runs without Loop overhead.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ec_export.errors import ExportError
from ec_export.onnx_io import DEFAULT_OPSET, export_onnx
from ec_train.canny import DEFAULT_ITERATIONS, canny_edges, gaussian_kernel_1d

CANNY_IO = {"inputs": ["gray", "mask"], "outputs": ["edges"]}
EXAMPLE_SIZE = 64


class CannyFromHoleMask(nn.Module):
    """``(gray, mask) -> edges`` with the export contract's hole mask (1 = hole, binarised at 0.5).

    A fixed-sigma, trace-friendly view of :class:`ec_train.canny.Canny` (no input checks, no random
    sigma), reused by the fused pipeline export.
    """

    def __init__(self, sigma: float = 2.0, low: float = 0.1, high: float = 0.2, iterations: int | None = None):
        super().__init__()
        if not sigma > 0:
            raise ExportError(f"an exported Canny needs a fixed sigma > 0, got {sigma} "
                              "(random sigma 0 and no-edges -1 are training options)")
        if not 0 <= low <= high:
            raise ExportError(f"Canny thresholds must satisfy 0 <= low <= high, got low={low}, high={high}")
        iterations = DEFAULT_ITERATIONS if iterations is None else iterations
        if int(iterations) != iterations or iterations < 0:
            raise ExportError(f"Canny iterations must be a non-negative integer, got {iterations}")
        self.sigma, self.low, self.high, self.iterations = float(sigma), float(low), float(high), int(iterations)
        self.register_buffer("kernel", gaussian_kernel_1d(self.sigma).float(), persistent=False)

    def settings(self) -> dict:
        """The ``ec.canny`` metadata / export.json entry."""
        return {"sigma": self.sigma, "low": self.low, "high": self.high, "iterations": self.iterations}

    def forward(self, gray: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        known = (mask < 0.5).to(gray.dtype)
        return canny_edges(gray, known, self.kernel, self.low, self.high, self.iterations)


def export_canny(path: str | Path, sigma: float = 2.0, low: float = 0.1, high: float = 0.2,
                 iterations: int | None = None, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``canny.onnx`` (contract above) with its ``metadata_props`` and return its path.

    ``iterations`` defaults to :data:`ec_train.canny.DEFAULT_ITERATIONS`. Raises :class:`ExportError`
    for settings that cannot be exported or a graph that fails ``onnx.checker``.
    """
    from ec_train import __version__ as toolkit_version

    module = CannyFromHoleMask(sigma, low, high, iterations)
    gray = torch.rand(1, 1, EXAMPLE_SIZE, EXAMPLE_SIZE)
    mask = torch.zeros(1, 1, EXAMPLE_SIZE, EXAMPLE_SIZE)
    mask[..., 16:40, 20:44] = 1.0
    metadata = {
        "ec.kind": "canny",
        "ec.precision": "fp32",
        "ec.io": CANNY_IO,
        "ec.canny": module.settings(),
        "ec.toolkit_version": toolkit_version,
    }
    path = Path(path)
    export_onnx(module, (gray, mask), path, CANNY_IO["inputs"], CANNY_IO["outputs"], opset=opset, metadata=metadata)
    return path


__all__ = ["CANNY_IO", "CannyFromHoleMask", "export_canny"]
