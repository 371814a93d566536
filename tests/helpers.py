"""Helpers shared by tests: real photos with holes, as numpy and torch tensors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ec_train.masks import free_form_mask
from ec_train.samples import SAMPLE_PHOTOS, sample_photo

# ec-train options for the quickest real runs (lite, 64 px, batch 1, no VGG, CPU)
TRAIN_FAST = ["--variant", "lite", "--size", "64", "--batch", "1", "--workers", "0", "--vgg-weights", "none",
              "--no-progress", "--device", "cpu"]


def write_sample_photos(folder: Path, count: int, size: int) -> Path:
    """The first ``count`` bundled sample photos, ``size`` px, as PNGs in ``folder``; returns ``folder``."""
    for name in SAMPLE_PHOTOS[:count]:
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(sample_photo(name, size), cv2.COLOR_RGB2BGR))
    return folder


def photo_and_mask(name: str = "astronaut", size: int = 256, seed: int = 0,
                   hole_ratio: tuple[float, float] = (0.1, 0.5)) -> tuple[np.ndarray, np.ndarray]:
    """A real photo (uint8 HxWx3) and a free-form hole mask (uint8 HxW, 1 = hole)."""
    img = sample_photo(name, size)
    mask = free_form_mask(size, size, np.random.default_rng(seed), hole_ratio)
    return img, mask


def to_tensors(img: np.ndarray, mask: np.ndarray):
    """(image N,3,H,W float in [0,1], mask N,1,H,W float) torch tensors with N=1."""
    import torch

    image = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    return image, m


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB between two arrays on the same scale (``peak`` is the maximum value)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)
