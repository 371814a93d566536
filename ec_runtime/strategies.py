"""How large images are inpainted: ``original``, ``resize`` or ``crop``.

Images whose long side is at most ``max_side`` always run at full resolution; the strategies
differ only above it.

* ``original``: run the models on the whole image at full resolution.
* ``resize``: shrink the image so its long side is ``max_side``, inpaint, upscale, and paste
  only the hole pixels into the full-resolution image. Above ``COARSE_ABOVE`` pixels only the
  window around the holes is upscaled (same pixel-centre mapping, within one level of a full
  ``cv2.resize``), so no full-size upscaled copy is made.
* ``crop``: for each connected hole region, cut a box around it grown by ``margin`` pixels
  (overlapping boxes are merged), inpaint each box (resized if it is still larger than
  ``max_side``) and paste its hole pixels back. Work scales with the holes, not the image.

With ``return_edges``, ``resize`` returns the edge map upscaled and ``crop`` returns it inside
the boxes (zero elsewhere).

The default was chosen by measurement (``benchmarks/runtime_strategies.py``; numbers in the README).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ec_runtime.errors import InputError

STRATEGIES = ("original", "resize", "crop")
DEFAULT_STRATEGY = "crop"
DEFAULT_MAX_SIDE = 512
DEFAULT_MARGIN = 128
COARSE_BLOCK = 16          # hole_boxes labels 16x16-pixel cells of images above COARSE_ABOVE pixels
COARSE_ABOVE = 4_000_000

PaintOne = Callable[[np.ndarray, np.ndarray, bool], tuple]  # (uint8 HxWx3, bool HxW, want_edges) -> (img, edges)


def check_strategy(name: str) -> None:
    if name not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")


def fits(shape: tuple[int, ...], name: str, max_side: int) -> bool:
    """True when ``name`` would run the image at full resolution anyway."""
    return name == "original" or max(shape[:2]) <= max_side


def _paste(image: np.ndarray, mask: np.ndarray, painted: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``painted`` where ``mask``, else ``image``; written into ``out`` (which may be ``image``) when given."""
    if out is None:
        return np.where(mask[..., None], painted, image)
    if out is not image:
        np.copyto(out, image)
    np.copyto(out, painted, where=mask[..., None])
    return out


def inpaint_resize(paint: PaintOne, image: np.ndarray, mask: np.ndarray, want_edges: bool,
                   max_side: int = DEFAULT_MAX_SIDE,
                   out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Inpaint at a long side of ``max_side``, upscale, and paste only the hole at full resolution.

    ``out`` (may be ``image`` itself) receives the result instead of a new array.
    """
    h, w = mask.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        painted, edges = paint(image, mask, want_edges)
        return (painted if out is None else _paste(image, mask, painted, out)), edges
    sh, sw = max(16, round(h * scale)), max(16, round(w * scale))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    # any source hole pixel makes its small pixel a hole, so no hole pixel is pasted from known data
    small_mask = cv2.resize(np.ascontiguousarray(mask).view(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0
    painted, edges = paint(small, small_mask, want_edges)
    if edges is not None:
        edges = cv2.resize(edges.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if h * w <= COARSE_ABOVE:
        return _paste(image, mask, cv2.resize(painted, (w, h), interpolation=cv2.INTER_CUBIC), out), edges
    # a large image: upscale only the window around the hole (a full-size upscaled copy would double
    # the memory), with the same pixel-centre mapping as cv2.resize
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    fy, fx = sh / h, sw / w
    warp = np.array([[fx, 0, (x0 + 0.5) * fx - 0.5], [0, fy, (y0 + 0.5) * fy - 0.5]])
    window = cv2.warpAffine(painted, warp, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    if out is None:
        out = image.copy()
    elif out is not image:
        np.copyto(out, image)
    np.copyto(out[y0:y1, x0:x1], window, where=mask[y0:y1, x0:x1, None])
    return out, edges


def _exact_components(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    return [(y, x, y + bh, x + bw) for x, y, bw, bh, _area in stats[1:n]]


def _coarse_components(mask: np.ndarray, block: int) -> list[tuple[int, int, int, int]]:
    """Tight boxes of the holes, grouped by 8-connected ``block`` x ``block`` cells that hold a hole.

    Labels a grid ``block``² times smaller than the image instead of the image itself (whose int32
    label map alone would be 4 bytes per pixel). Holes less than ``block`` pixels apart may share a
    box; with ``block <= margin`` their grown boxes would have been merged anyway.
    """
    h, w = mask.shape
    rows = np.logical_or.reduceat(mask, np.arange(0, h, block), axis=0)
    grid = np.logical_or.reduceat(rows, np.arange(0, w, block), axis=1)
    del rows
    boxes = []
    for gy0, gx0, gy1, gx1 in _exact_components(grid):
        y0, x0, y1, x1 = gy0 * block, gx0 * block, min(h, gy1 * block), min(w, gx1 * block)
        region = mask[y0:y1, x0:x1]
        ys, xs = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
        boxes.append((y0 + int(ys[0]), x0 + int(xs[0]), y0 + int(ys[-1]) + 1, x0 + int(xs[-1]) + 1))
    return boxes


def hole_boxes(mask: np.ndarray, margin: int) -> list[tuple[int, int, int, int]]:
    """Boxes (y0, x0, y1, x1) around each 8-connected hole region, grown by ``margin`` and merged
    until no two overlap."""
    h, w = mask.shape
    mask = np.ascontiguousarray(mask, dtype=bool)
    block = min(COARSE_BLOCK, margin)
    tight = _coarse_components(mask, block) if block > 1 and h * w > COARSE_ABOVE else _exact_components(mask)
    boxes = [(max(0, y0 - margin), max(0, x0 - margin), min(h, y1 + margin), min(w, x1 + margin))
             for y0, x0, y1, x1 in tight]
    merged = True
    while merged:
        merged = False
        out: list[tuple[int, int, int, int]] = []
        for b in boxes:
            for i, o in enumerate(out):
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    out[i] = (min(b[0], o[0]), min(b[1], o[1]), max(b[2], o[2]), max(b[3], o[3]))
                    merged = True
                    break
            else:
                out.append(b)
        boxes = out
    return boxes


def _at_least(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    """Grow [lo, hi) to ``size`` pixels inside [0, limit) (boxes must be >= 16 px for the models)."""
    if hi - lo >= size:
        return lo, hi
    lo = max(0, min(lo - (size - (hi - lo)) // 2, limit - size))
    return lo, min(limit, lo + size)


def inpaint_crop(paint: PaintOne, image: np.ndarray, mask: np.ndarray, want_edges: bool,
                 max_side: int = DEFAULT_MAX_SIDE, margin: int = DEFAULT_MARGIN, inplace: bool = False):
    """Inpaint a margin-padded box around each hole region; boxes larger than ``max_side`` are resized.

    Only the boxes pass through float buffers and the models, so the memory beyond the image and its
    mask scales with the holes. ``inplace`` writes the result into ``image`` itself (no copy).
    """
    h, w = mask.shape
    out = image if inplace else image.copy()
    edges = np.zeros((h, w), np.float32) if want_edges else None
    for y0, x0, y1, x1 in hole_boxes(mask, margin):
        y0, y1 = _at_least(y0, y1, 32, h)
        x0, x1 = _at_least(x0, x1, 32, w)
        crop_img, crop_mask = out[y0:y1, x0:x1], mask[y0:y1, x0:x1]  # boxes never overlap: out is still original here
        _, crop_edges = inpaint_resize(paint, crop_img, crop_mask, want_edges, max_side, out=crop_img)
        if want_edges:
            edges[y0:y1, x0:x1] = crop_edges
    return out, edges


def apply(name: str, paint: PaintOne, image: np.ndarray, mask: np.ndarray, want_edges: bool, *,
          max_side: int = DEFAULT_MAX_SIDE, margin: int = DEFAULT_MARGIN, inplace: bool = False):
    """Run strategy ``name``; returns ``(uint8 image, edges or None)``. ``inplace`` lets the large-image
    strategies write into ``image`` instead of a copy."""
    check_strategy(name)
    if fits(image.shape, name, max_side):
        return paint(image, mask, want_edges)
    if name == "resize":
        return inpaint_resize(paint, image, mask, want_edges, max_side, out=image if inplace else None)
    return inpaint_crop(paint, image, mask, want_edges, max_side, margin, inplace)
