"""Reading images and masks into the runtime's conventions, and writing results safely.

Images become uint8 RGB (H, W, 3):

* files: EXIF orientation is applied as image viewers do (JPEG, PNG, WebP, TIFF); grayscale is
  replicated to three channels; an alpha channel is dropped (the color under it is inpainted);
  16-bit data is scaled by 1/257; palette images are expanded by the decoder.
* arrays (the Python API): uint8 as is; uint16 scaled by 1/257; bool as 0/255; other integer types
  must hold values in 0..255; **float arrays must be finite and lie in [0, 1]** (values within
  half a step, 1/510, outside it are rounded like in-range ones). NaN, infinity, float data on a
  0..255 scale and negative values are refused with :class:`InputError`, never clipped.

Masks become bool (H, W), True = hole, by **one rule for files and arrays** (see
:func:`hole_mask`): a pixel is a hole when its value is above half of full scale (127 of 255,
32767 of 65535, 0.5 of 1.0), which survives JPEG compression. An integer mask whose largest value
is 1, 2 or 3 is a 0/1 label mask (JPEG ringing can push a saved 0/1 mask to 2): there every
nonzero pixel is a hole. Color masks use their brightest channel; alpha is ignored.

Writing (:func:`write_image`, :func:`write_bytes_atomic`) lives in :mod:`ec_runtime.imagewrite`
and is re-exported here: atomic, with the usual file modes, never over a file that must be kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ec_runtime.errors import InputError
from ec_runtime.exif import apply_orientation, exif_orientation_of_file, image_size
from ec_runtime.imagewrite import (IMAGE_SUFFIXES, swap_rb_inplace, write_bytes_atomic,  # noqa: F401 (re-exported)
                                   write_image)

MIN_SIDE = 16
LABEL_MAX = 3        # an integer mask whose maximum is 1..3 is a 0/1 label mask
FLOAT_SLACK = 0.5 / 255  # float data this far outside [0, 1] still rounds to 0 / 255


def quiet_opencv() -> None:
    """Silence OpenCV's own log lines (a command reports unreadable files in its own words)."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # an OpenCV build without the logging module
        pass


def available_memory() -> int | None:
    """Bytes of memory this process can still get (MemAvailable, capped by a cgroup v2 limit); None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(avail, 0)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_fits(path: Path) -> tuple[int, int, int, int] | None:
    """Refuse, from its header alone, an image that OpenCV would not decode or that cannot fit in memory.

    Returns the header's (width, height, channels, bytes per channel), or None when unknown.
    """
    size = image_size(path)
    if size is None:
        return None
    w, h, channels, depth = size
    limit = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))
    if w * h > limit:
        raise InputError(f"{path}: {w}x{h} is {w * h / 1e6:.0f} megapixels, above OpenCV's decoder limit of "
                         f"{limit / 1e6:.0f} (set OPENCV_IO_MAX_IMAGE_PIXELS to raise it, memory permitting)")
    need = w * h * channels * depth + (w * h * 3 if (channels, depth) != (3, 1) else 0)
    avail = available_memory()
    if avail is not None and need > avail:
        raise InputError(f"{path}: {w}x{h} needs about {_gb(need)} of memory to decode, but only {_gb(avail)} is "
                         "available; free memory, or split or downscale the image")
    return size


def _imread(path: Path, size: tuple[int, int, int, int] | None) -> np.ndarray | None:
    """``cv2.imread(IMREAD_UNCHANGED)``, decoding into a preallocated array when the header gave the size.

    Without ``dst`` the Python binding holds the decoded image twice for a moment (measured: peak 2x
    the image); with it, once. OpenCV reallocates a ``dst`` of the wrong shape, and versions without
    the ``dst`` overload (< 4.10) take the plain call.
    """
    if size is not None:
        w, h, channels, depth = size
        dst = np.empty((h, w) if channels == 1 else (h, w, channels), np.uint16 if depth == 2 else np.uint8)
        try:
            return cv2.imread(str(path), dst, cv2.IMREAD_UNCHANGED)
        except (cv2.error, TypeError):
            del dst
    try:
        return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None


def _decode(path: Path) -> np.ndarray:
    """Decode an image file with its own channels and bit depth, turned upright per EXIF.

    On POSIX the file is decoded by OpenCV straight from disk (no copy of the encoded bytes in
    memory); elsewhere through ``np.fromfile`` + ``imdecode`` (which handles non-ASCII paths).
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an image file")
    if not path.is_file():  # a device, FIFO or socket could block or never end
        raise InputError(f"{path}: not a regular file, expected an image file")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
        orientation = exif_orientation_of_file(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if empty:
        raise InputError(f"{path}: not a readable image (the file is empty)")
    size = check_fits(path)
    try:
        direct = os.name == "posix" and path.suffix.lower() not in (".tif", ".tiff")
        arr = _imread(path, size) if direct else None
        if arr is None:  # non-POSIX, TIFF (imread refuses some oriented ones), or a file imread cannot read
            arr = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    except MemoryError:
        raise InputError(f"{path}: not enough memory to decode this image") from None
    if arr is None:
        raise InputError(f"{path}: not a readable image (corrupt, empty or unsupported format)")
    if path.suffix.lower() in (".tif", ".tiff"):
        return arr  # the TIFF decoder applies the orientation tag itself
    return apply_orientation(arr, orientation)


def _not_an_array(arr, source: str) -> None:
    if isinstance(arr, (str, bytes, os.PathLike)):
        raise InputError(f"{source}: got a path ({arr!s:.80}), expected an array; "
                         "read files with ec_runtime.imageio.read_image / read_mask")
    if arr is None:
        raise InputError(f"{source}: expected an array, got None")


def _check_float(arr: np.ndarray, source: str, what: str) -> None:
    """Finite and within [0, 1] (+- FLOAT_SLACK), or :class:`InputError`."""
    if arr.size == 0:
        return
    lo, hi = float(arr.min()), float(arr.max())
    if np.isnan(lo) or np.isnan(hi):
        raise InputError(f"{source}: the {what} contains NaN values; give finite values in [0, 1]")
    if np.isinf(lo) or np.isinf(hi):
        raise InputError(f"{source}: the {what} contains infinite values; give finite values in [0, 1]")
    if lo < -FLOAT_SLACK or hi > 1 + FLOAT_SLACK:
        raise InputError(f"{source}: float {what} values must lie in [0, 1], this one spans [{lo:.4g}, {hi:.4g}]"
                         + ("; divide 0..255 data by 255 or pass uint8" if hi > 1 else ""))


def _check_int_range(arr: np.ndarray, source: str, what: str) -> None:
    if arr.size == 0:
        return
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise InputError(f"{source}: {arr.dtype} {what} has negative values ({lo}); values must lie in 0..255")
    if hi > 255:
        raise InputError(f"{source}: {arr.dtype} {what} values must lie in 0..255 (largest: {hi}); "
                         "use uint16 for 16-bit data")


def _to_uint8(arr: np.ndarray, source: str, what: str = "image") -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:  # round(x / 257) without a wider temporary
        return cv2.convertScaleAbs(np.ascontiguousarray(arr), alpha=1 / 257)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.integer):
        _check_int_range(arr, source, what)
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        _check_float(arr, source, what)
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    raise InputError(f"{source}: unsupported pixel type {arr.dtype}; use uint8 (0..255), uint16 or float in [0, 1]")


def to_rgb_uint8(arr, source: str = "image", bgr: bool = False, owned: bool = False) -> np.ndarray:
    """Any 2-D or 3-D image array (gray, gray+alpha, RGB, RGBA; see the module docstring for the
    pixel types) -> uint8 RGB (H, W, 3). ``bgr`` says the channels are in OpenCV order (as decoded
    from a file); ``owned`` that ``arr`` may be reused for the result (no copy for a decoded
    8-bit color image). :class:`InputError` for anything else."""
    _not_an_array(arr, source)
    try:
        arr = np.asarray(arr)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{source}: not an image array ({exc})") from exc
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise InputError(f"{source}: expected an H x W or H x W x {{1,2,3,4}} image, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{source}: image is {arr.shape[1]}x{arr.shape[0]}; both sides must be at least "
                         f"{MIN_SIDE} pixels")
    if arr.ndim == 3 and arr.shape[2] != 3:
        arr = arr[..., :3] if arr.shape[2] == 4 else arr[..., 0]  # drop alpha before converting
    converted = _to_uint8(arr, source)
    if converted.ndim == 2:
        return np.ascontiguousarray(np.repeat(converted[..., None], 3, axis=2))
    if bgr and (owned or converted is not arr) and converted.flags.c_contiguous and converted.flags.writeable:
        return swap_rb_inplace(converted)  # in place: no image-sized copy
    return np.ascontiguousarray(converted[..., ::-1] if bgr else converted)


def _mask_values(arr, source: str) -> np.ndarray:
    """A mask array as (H, W) values: alpha dropped, color reduced to its brightest channel."""
    _not_an_array(arr, source)
    try:
        arr = np.asarray(arr)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{source}: not a mask array ({exc})") from exc
    if arr.ndim == 3 and arr.shape[2] in (1, 2):
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3].max(axis=2) if arr.dtype.kind in "biuf" else arr[..., 0]
    if arr.ndim != 2:
        raise InputError(f"{source}: expected an H x W (or H x W x 1..4) mask, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{source}: unsupported mask type {arr.dtype}; use bool, uint8, uint16 or float in [0, 1]")
    return arr


def hole_mask(mask, source: str = "mask", owned: bool = False) -> np.ndarray:
    """The mask rule, the same for files and arrays -> bool (H, W), True = hole.

    * bool: True = hole.
    * uint8 / uint16: a pixel is a hole when above half of full scale (> 127 / > 32767).
    * other integer types: values must lie in 0..255; holes are > 127.
    * float: values must be finite and in [0, 1]; holes are > 0.5.
    * an integer mask whose largest value is 1, 2 or 3 is a 0/1 label mask: nonzero = hole.
    * (H, W, 1..4) masks: alpha is ignored, color masks use their brightest channel.

    ``owned`` lets a C-contiguous uint8 ``mask`` hold the result itself (it is overwritten).
    """
    arr = _mask_values(mask, source)
    if arr.dtype == np.bool_:
        return arr  # as given (no copy: masks can be as large as the image)
    if np.issubdtype(arr.dtype, np.floating):
        _check_float(arr, source, "mask")
        return arr > 0.5
    top = 65535 if arr.dtype == np.uint16 else 255
    if arr.dtype != np.uint8 and arr.dtype != np.uint16:
        _check_int_range(arr, source, "mask")
    peak = int(arr.max(initial=0))
    out = None
    private = owned or not np.may_share_memory(arr, np.asarray(mask))  # never overwrite a caller's array
    if arr.dtype == np.uint8 and arr.flags.c_contiguous and arr.flags.writeable and private:
        out = arr.view(np.bool_)  # 0/1 bytes are valid bools: no second mask-sized buffer
    if 0 < peak <= LABEL_MAX:
        return np.not_equal(arr, 0, out=out)
    return np.greater(arr, top // 2, out=out)


def empty_mask_note(mask, source: str = "mask") -> str:
    """Why ``mask`` (which :func:`hole_mask` found empty) has no hole, in words."""
    arr = _mask_values(mask, source)
    if arr.dtype == np.bool_ or arr.size == 0 or not arr.any():
        return f"{source}: the mask has no hole (it is all zero); white (above half scale) marks the hole"
    peak = arr.max()
    scale = "1.0" if np.issubdtype(arr.dtype, np.floating) else "65535" if arr.dtype == np.uint16 else "255"
    half = "0.5" if scale == "1.0" else "32767" if scale == "65535" else "127"
    return (f"{source}: the mask has no hole: no value is above half scale ({half} of {scale}); "
            f"its largest value is {peak:.4g}")


def check_pair(image: np.ndarray, mask: np.ndarray, source: str = "input") -> None:
    """Raise :class:`InputError` unless ``image`` (H, W, 3) is >= 16 px and ``mask`` (H, W) matches it."""
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{source}: image is {w}x{h}; both sides must be at least {MIN_SIDE} pixels")
    if mask.shape[:2] != (h, w):
        raise InputError(f"{source}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}; "
                         "give a mask of the same size (or use --resize-mask)")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3), upright; :class:`InputError` naming the path on failure."""
    path = Path(path)
    return to_rgb_uint8(_decode(path), str(path), bgr=True, owned=True)


def load_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask file's upright pixel values (for :func:`hole_mask` / :func:`empty_mask_note`).

    With ``size`` = (height, width) the mask is resized with nearest-neighbour interpolation
    (the CLI's ``--resize-mask``).
    """
    path = Path(path)
    arr = _mask_values(_decode(path), str(path))
    if size is not None and arr.shape[:2] != tuple(size):
        src = arr.astype(np.uint8) if arr.dtype == np.bool_ else arr
        arr = cv2.resize(np.ascontiguousarray(src), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return arr


def read_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file as bool (H, W), True = hole, by the rule of :func:`hole_mask`."""
    return hole_mask(load_mask(path, size), str(path), owned=True)


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files (by suffix) directly inside ``directory``, sorted by name (hidden files skipped)."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
