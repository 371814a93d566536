"""Hole masks: procedural generators and mask files. 1 marks the hole.

Numpy + OpenCV only (no torch), so export calibration, benchmarks and tests can draw masks
cheaply. Every generator takes a ``numpy.random.Generator`` so results are reproducible.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from ec_train.errors import DataError

MASK_KINDS = ("irregular", "block", "half", "mixed")


def _draw_stroke(mask: np.ndarray, rng: np.random.Generator) -> None:
    h, w = mask.shape
    side = min(h, w)
    x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
    width = int(rng.integers(max(2, side // 40), max(3, side // 10) + 1))
    angle = rng.uniform(0, 2 * math.pi)
    for _ in range(int(rng.integers(3, 9))):
        angle += rng.uniform(-math.pi / 2.5, math.pi / 2.5)
        length = rng.uniform(side * 0.05, side * 0.25)
        nx = int(np.clip(x + length * math.cos(angle), 0, w - 1))
        ny = int(np.clip(y + length * math.sin(angle), 0, h - 1))
        cv2.line(mask, (x, y), (nx, ny), 1, width)
        cv2.circle(mask, (nx, ny), width // 2, 1, -1)
        x, y = nx, ny


def free_form_mask(height: int, width: int, rng: np.random.Generator,
                   hole_ratio: tuple[float, float] = (0.1, 0.5)) -> np.ndarray:
    """Free-form brush strokes covering a fraction of the image drawn uniformly from ``hole_ratio``.

    Returns a uint8 (H, W) array of {0, 1}. The achieved ratio lies within the range (strokes
    are added until the target is reached; an overshoot past the upper bound is redrawn).
    """
    lo, hi = hole_ratio
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"hole_ratio must be 0 <= lo <= hi <= 1, got {hole_ratio}")
    target = rng.uniform(lo, hi)
    for _ in range(50):
        mask = np.zeros((height, width), np.uint8)
        while mask.mean() < target:
            _draw_stroke(mask, rng)
        if mask.mean() <= hi:
            return mask
    return mask  # extremely thin ranges: return the closest attempt rather than loop forever


def block_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random rectangle of half the height and half the width (25% of the image)."""
    bh, bw = height // 2, width // 2
    y, x = int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1))
    mask = np.zeros((height, width), np.uint8)
    mask[y:y + bh, x:x + bw] = 1
    return mask


def half_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The left, right, top or bottom half of the image."""
    mask = np.zeros((height, width), np.uint8)
    side = int(rng.integers(0, 4))
    if side == 0:
        mask[:, : width // 2] = 1
    elif side == 1:
        mask[:, width // 2:] = 1
    elif side == 2:
        mask[: height // 2] = 1
    else:
        mask[height // 2:] = 1
    return mask


def procedural_mask(kind: str, height: int, width: int, rng: np.random.Generator,
                    hole_ratio: tuple[float, float] = (0.1, 0.5)) -> np.ndarray:
    """Draw a mask of ``kind`` (``irregular``, ``block``, ``half`` or ``mixed``).

    ``mixed`` follows the official recipe's mix: half of the draws free-form, the rest split
    between blocks and halves.
    """
    if kind == "mixed":
        r = rng.random()
        kind = "irregular" if r < 0.5 else ("block" if r < 0.85 else "half")
    if kind == "irregular":
        return free_form_mask(height, width, rng, hole_ratio)
    if kind == "block":
        return block_mask(height, width, rng)
    if kind == "half":
        return half_mask(height, width, rng)
    raise ValueError(f"unknown mask kind {kind!r}; expected one of {', '.join(MASK_KINDS)}")


def load_mask(path: str | Path, size: tuple[int, int] | None = None, threshold: float = 0.5,
              invert: bool = False) -> np.ndarray:
    """Read a mask image of any size and depth, resize it to ``size`` (H, W), binarise at ``threshold``.

    ``invert`` is for mask sets where black marks the hole. Returns uint8 {0, 1}.
    """
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(f"cannot read mask image: {path}")
    if raw.ndim == 3:
        raw = raw[..., :3].max(axis=2)
    scale = float(np.iinfo(raw.dtype).max) if np.issubdtype(raw.dtype, np.integer) else 1.0
    m = raw.astype(np.float32) / scale
    if size is not None and m.shape != tuple(size):
        m = cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    mask = (m > threshold).astype(np.uint8)
    return 1 - mask if invert else mask
