"""Reading images and masks into the runtime's conventions, and writing results atomically.

Conventions:

* Images become uint8 RGB (H, W, 3): grayscale is replicated to three channels, an alpha channel
  is dropped (the color under it is what gets inpainted), 16-bit images are scaled by 1/257,
  float images are read as [0, 1], palette images are expanded by the decoder.
* Masks become bool (H, W), True = hole. A mask file is converted to gray and thresholded:
  values above 127 are holes (white = hole). A file whose maximum value is 1 (a 0/1 mask
  saved as-is) is read as nonzero = hole. 16-bit masks are scaled to 8 bits first.
* Writes go to a temporary file in the destination directory, then ``os.replace``: a reader
  never sees half a file, and an interrupted run leaves the old file intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ec_runtime.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_THRESHOLD = 127
MIN_SIDE = 16


def _decode(path: Path) -> np.ndarray:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an image file")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile + imdecode handles non-ASCII paths
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if arr is None:
        raise InputError(f"{path}: not a readable image (corrupt, empty or unsupported format)")
    return arr


def _to_uint8(arr: np.ndarray, source: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    raise InputError(f"{source}: unsupported pixel type {arr.dtype}")


def to_rgb_uint8(arr: np.ndarray, source: str = "image", bgr: bool = False) -> np.ndarray:
    """Any 2-D or 3-D image array (gray, gray+alpha, RGB, RGBA; 8/16-bit or float) -> uint8 RGB (H, W, 3).

    ``bgr`` says the channels are in OpenCV order (as decoded from a file).
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = _to_uint8(arr, source)
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
    if arr.ndim != 3 or arr.shape[2] not in (2, 3, 4):
        raise InputError(f"{source}: expected an H x W or H x W x {{1,2,3,4}} image, got shape {arr.shape}")
    arr = _to_uint8(arr, source)
    if arr.shape[2] == 2:  # gray + alpha
        return np.ascontiguousarray(np.repeat(arr[..., :1], 3, axis=2))
    rgb = arr[..., :3]
    if bgr:
        rgb = rgb[..., ::-1]
    return np.ascontiguousarray(rgb)


def to_mask_bool(arr: np.ndarray, source: str = "mask", threshold: int = MASK_THRESHOLD,
                 bgr: bool = False) -> np.ndarray:
    """A mask *file's* pixels -> bool (H, W), True = hole.

    Color masks are converted to gray; 16-bit and float masks are scaled to 8 bits. Pixels above
    ``threshold`` (127) are holes, except in a mask whose maximum is 1 (a 0/1 mask saved as-is),
    where every nonzero pixel is. (Arrays given to the Python API use nonzero = hole directly.)
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise InputError(f"{source}: expected an H x W mask, got shape {arr.shape}")
    if arr.max(initial=0) == 1:
        return (arr != 0) if arr.ndim == 2 else np.any(arr[..., :3] != 0, axis=2)
    if arr.ndim == 3:
        gray = cv2.cvtColor(to_rgb_uint8(arr, source, bgr=bgr), cv2.COLOR_RGB2GRAY)
    else:
        gray = _to_uint8(arr, source)
    return gray > threshold


def hole_mask(mask: np.ndarray, source: str = "mask") -> np.ndarray:
    """A mask array given to the Python API (bool or numeric, H x W or H x W x 1) -> bool, nonzero = hole."""
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise InputError(f"{source}: expected an H x W mask, got shape {arr.shape}")
    return arr != 0


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3); :class:`InputError` naming the path on failure."""
    path = Path(path)
    return to_rgb_uint8(_decode(path), str(path), bgr=True)


def read_mask(path: str | os.PathLike, size: tuple[int, int] | None = None,
              threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """Read a mask file as bool (H, W), True = hole (see the module docstring for the rule).

    With ``size`` = (height, width) the mask is resized with nearest-neighbour interpolation
    before thresholding (the CLI's ``--resize-mask``).
    """
    path = Path(path)
    arr = _decode(path)
    if size is not None and arr.shape[:2] != tuple(size):
        arr = cv2.resize(arr, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return to_mask_bool(arr, str(path), threshold, bgr=True)


def check_pair(image: np.ndarray, mask: np.ndarray, source: str = "input") -> None:
    """Raise :class:`InputError` unless ``image`` (H, W, 3) and ``mask`` (H, W) match and are >= 16 px."""
    h, w = image.shape[:2]
    if mask.shape[:2] != (h, w):
        raise InputError(f"{source}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}; "
                         "give a mask of the same size (or use --resize-mask)")
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{source}: image is {w}x{h}; both sides must be at least {MIN_SIDE} pixels")


def write_image(path: str | os.PathLike, image: np.ndarray, *, protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Write uint8 RGB (or gray) ``image`` to ``path`` atomically (temp file + ``os.replace``).

    The format follows the suffix. ``protect`` lists input files that must never be overwritten;
    writing onto one of them raises :class:`InputError`.
    """
    path = Path(path)
    for other in protect:
        if Path(other).exists() and path.exists() and os.path.samefile(path, other):
            raise InputError(f"{path}: refusing to overwrite an input file; choose another output path")
    suffix = path.suffix.lower() or ".png"
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unsupported output format {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., ::-1]  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(arr))
    if not ok:
        raise InputError(f"{path}: could not encode the image as {suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix + ".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files (by suffix) directly inside ``directory``, sorted by name."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
