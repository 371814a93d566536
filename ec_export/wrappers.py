"""Torch modules that implement the ONNX I/O contract around (folded) generators.

Each wrapper builds the generator's input itself, so the exported graphs take plain images,
edges and hole masks (1 = hole) and return composited results:

* :class:`EdgeStage` ``(gray, edges, mask) -> (edges_out, edges_raw)``;
* :class:`InpaintStage` ``(image, edges, mask) -> image_out``;
* :class:`FusedPipeline` ``(image, mask) -> (image_out, edges_out)`` with gray and Canny inside.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ec_train.networks import InpaintGenerator, edge_generator_input, inpaint_generator_input, rgb_to_gray
from ec_train.spectral import fold_spectral_norm, has_spectral_norm

EDGE_IO = {"inputs": ["gray", "edges", "mask"], "outputs": ["edges_out", "edges_raw"]}
INPAINT_IO = {"inputs": ["image", "edges", "mask"], "outputs": ["image_out"]}
PIPELINE_IO = {"inputs": ["image", "mask"], "outputs": ["image_out", "edges_out"]}


def prepare_generator(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with spectral norm folded into plain weights."""
    model = getattr(model, "module", model)  # unwrap DataParallel / DDP
    return (fold_spectral_norm(model) if has_spectral_norm(model) else model).eval()


class EdgeStage(nn.Module):
    """Stage 1: ``edges_raw = G_edge(cat(gray*(1-m)+m, edges*(1-m), m))``.

    ``edges_out`` merges it the training way (``raw*m + edges*(1-m)``); ``edges_raw`` is the raw
    sigmoid map, which the official test script fed to stage 2.
    """

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, gray: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor):
        raw = self.generator(edge_generator_input(gray, edges, mask))
        return raw * mask + edges * (1 - mask), raw


class SigmoidHeadInpaint(nn.Module):
    """An inpaint generator whose output ``(tanh(y)+1)/2`` is computed as ``sigmoid(2y)``.

    The two are the same function; the factor 2 is folded into the last conv's weight and bias,
    which saves the graph two elementwise nodes (and is the numerically tamer form in FP16).
    """

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = copy.deepcopy(generator)
        last = self.generator.decoder[-1]
        with torch.no_grad():
            last.weight.mul_(2)
            if last.bias is not None:
                last.bias.mul_(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.generator.body(x))


class InpaintStage(nn.Module):
    """Stage 2: ``G_inpaint(cat(image*(1-m)+m, edges))`` composited as ``out*m + image*(1-m)``."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = SigmoidHeadInpaint(generator) if isinstance(generator, InpaintGenerator) else generator

    def forward(self, image: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.generator(inpaint_generator_input(image, edges, mask, self.generator))
        return out * mask + image * (1 - mask)


class FusedPipeline(nn.Module):
    """image + hole mask -> (final image, merged edges), Canny included.

    ``canny`` is a module called as ``canny(gray, mask)`` with the hole mask (1 = hole), returning
    {0, 1} edges: the ONNX Canny wrapper of :mod:`ec_export.canny_onnx`.
    """

    def __init__(self, edge_generator: nn.Module, inpaint_generator: nn.Module, canny: nn.Module):
        super().__init__()
        self.canny = canny
        self.edge = EdgeStage(edge_generator)
        self.inpaint = InpaintStage(inpaint_generator)

    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        gray = rgb_to_gray(image)
        edges = self.canny(gray, mask)
        edges_out, _ = self.edge(gray, edges, mask)
        return self.inpaint(image, edges_out, mask), edges_out
