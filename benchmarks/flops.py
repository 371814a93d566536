"""Analytic FLOP counts of the generators (2 FLOPs per multiply-add; convolutions only).

Normalisation, activations, padding and Canny add well under 2% and are not counted.
"""

from __future__ import annotations


def _conv(cin: int, cout: int, k: int, h: int, w: int) -> float:
    return 2.0 * cin * cout * k * k * h * w


def generator_flops(in_channels: int, out_channels: int, base_channels: int, residual_blocks: int,
                    height: int, width: int) -> float:
    """FLOPs of one generator forward on one H x W image."""
    c1, c2, c3 = base_channels, 2 * base_channels, 4 * base_channels
    h2, w2, h4, w4 = height // 2, width // 2, height // 4, width // 4
    total = _conv(in_channels, c1, 7, height, width)
    total += _conv(c1, c2, 4, h2, w2) + _conv(c2, c3, 4, h4, w4)
    total += residual_blocks * 2 * _conv(c3, c3, 3, h4, w4)
    total += _conv(c3, c2, 4, h4, w4) + _conv(c2, c1, 4, h2, w2)  # ConvTranspose: per input pixel
    total += _conv(c1, out_channels, 7, height, width)
    return total


def pipeline_flops(base_channels: int, residual_blocks: int, height: int, width: int) -> float:
    """FLOPs of the edge generator plus the inpaint generator on one image."""
    return (generator_flops(3, 1, base_channels, residual_blocks, height, width)
            + generator_flops(4, 3, base_channels, residual_blocks, height, width))
