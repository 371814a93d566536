"""Real photos that ship inside scikit-image, for tests, calibration, benchmarks and demos.

Nothing is downloaded: only images bundled with the ``scikit-image`` wheel are listed.
"""

from __future__ import annotations

import cv2
import numpy as np

SAMPLE_PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle",
    "hubble_deep_field", "immunohistochemistry", "retina", "cat", "colorwheel",
)


def sample_photo(name: str, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """A bundled photo as uint8 RGB (H, W, 3).

    With ``size`` it is center-cropped to the target aspect ratio and resized (INTER_AREA).
    ``size`` is an int (square) or (height, width).
    """
    import skimage.data

    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"unknown sample photo {name!r}; choose from {', '.join(SAMPLE_PHOTOS)}")
    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle returns (left, right, disparity)
        img = img[0]
    img = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    if size is None:
        return img
    th, tw = (size, size) if isinstance(size, int) else size
    return center_crop_resize(img, th, tw)


def center_crop_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop the largest centered window of aspect ``width/height`` and resize it to (height, width)."""
    h, w = img.shape[:2]
    scale = min(h / height, w / width)
    ch, cw = int(round(height * scale)), int(round(width * scale))
    y, x = (h - ch) // 2, (w - cw) // 2
    crop = img[y:y + ch, x:x + cw]
    interp = cv2.INTER_AREA if ch >= height else cv2.INTER_CUBIC
    return cv2.resize(crop, (width, height), interpolation=interp)
