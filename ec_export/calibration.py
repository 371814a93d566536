"""Images with real holes for INT8 calibration and for measuring the drift of each precision.

Calibration uses real photos (a ``--calib`` directory, or the photos bundled with scikit-image)
with procedural free-form holes, so activations see the statistics they see in use: a hole filled
with 1s in the input, Canny edges around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ec_export.errors import ExportError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_CALIB_SIZE = 256
ACCURACY_PHOTOS = ("astronaut", "coffee")


def load_calibration_images(source: str | Path | Sequence[np.ndarray] | None, size: int = DEFAULT_CALIB_SIZE,
                            limit: int | None = None) -> list[np.ndarray]:
    """uint8 RGB (size, size, 3) images from a directory, a list of arrays, or the bundled photos (None).

    Raises :class:`ExportError` when the directory does not exist or holds no readable image.
    """
    from ec_train.samples import SAMPLE_PHOTOS, center_crop_resize, sample_photo

    if size % 4:
        raise ExportError(f"calibration size must be a multiple of 4, got {size}")
    if source is None:
        images = [sample_photo(name, size) for name in SAMPLE_PHOTOS]
    elif isinstance(source, (str, Path)):
        images = [center_crop_resize(img, size, size) for img in _read_dir(Path(source))]
    else:
        images = [center_crop_resize(np.asarray(img, np.uint8)[..., :3], size, size) for img in source]
    if not images:
        raise ExportError(f"the calibration set {source} is empty: INT8 calibration needs real images")
    return images[:limit] if limit else images


def _read_dir(directory: Path) -> list[np.ndarray]:
    import cv2

    if not directory.is_dir():
        raise ExportError(f"calibration directory not found: {directory}")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    images = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if not images:
        raise ExportError(f"the calibration directory {directory} holds no readable images "
                          f"({', '.join(IMAGE_SUFFIXES)}): INT8 calibration needs real images")
    return images


def holes_for(images: Sequence[np.ndarray], seed: int = 0, hole_ratio=(0.1, 0.5)) -> list[np.ndarray]:
    """One procedural free-form hole mask (uint8, 1 = hole) per image, reproducible from ``seed``."""
    from ec_train.masks import free_form_mask

    rng = np.random.default_rng(seed)
    return [free_form_mask(img.shape[0], img.shape[1], rng, hole_ratio) for img in images]


def to_nchw(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 HxWx3 + HxW mask -> float32 (1,3,H,W) in [0,1] and (1,1,H,W) {0,1}."""
    x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32) / 255.0
    m = (np.asarray(mask) != 0).astype(np.float32)[None, None]
    return x, m


def accuracy_samples(size: int = 128, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """A few photos with holes (NCHW float32) for the drift numbers (other holes than calibration's)."""
    from ec_train.samples import sample_photo

    images = [sample_photo(name, size) for name in ACCURACY_PHOTOS]
    return [to_nchw(img, m) for img, m in zip(images, holes_for(images, seed))]
