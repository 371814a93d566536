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

Writes go to a temporary file in the destination directory, created with the usual permissions
(0666 less the umask), then are renamed into place: a reader never sees half a file, an
interrupted run leaves no partial output, and with ``overwrite=False`` an existing file is never
replaced, even one that appears while the command runs.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import cv2
import numpy as np

from ec_runtime.errors import InputError, OutputError
from ec_runtime.exif import apply_orientation, exif_orientation

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MIN_SIDE = 16
LABEL_MAX = 3        # an integer mask whose maximum is 1..3 is a 0/1 label mask
FLOAT_SLACK = 0.5 / 255  # float data this far outside [0, 1] still rounds to 0 / 255


def _decode(path: Path) -> np.ndarray:
    """Decode an image file with its own channels and bit depth, turned upright per EXIF."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an image file")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile + imdecode handles non-ASCII paths
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:
        arr = None
    if arr is None:
        raise InputError(f"{path}: not a readable image (corrupt, empty or unsupported format)")
    return apply_orientation(arr, exif_orientation(data))


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
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.integer):
        _check_int_range(arr, source, what)
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        _check_float(arr, source, what)
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    raise InputError(f"{source}: unsupported pixel type {arr.dtype}; use uint8 (0..255), uint16 or float in [0, 1]")


def to_rgb_uint8(arr, source: str = "image", bgr: bool = False) -> np.ndarray:
    """Any 2-D or 3-D image array (gray, gray+alpha, RGB, RGBA; see the module docstring for the
    pixel types) -> uint8 RGB (H, W, 3). ``bgr`` says the channels are in OpenCV order (as decoded
    from a file). :class:`InputError` for anything else."""
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
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[2] != 2 else arr[..., 0]  # drop alpha before converting
    arr = _to_uint8(arr, source)
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
    return np.ascontiguousarray(arr[..., ::-1] if bgr else arr)


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


def hole_mask(mask, source: str = "mask") -> np.ndarray:
    """The mask rule, the same for files and arrays -> bool (H, W), True = hole.

    * bool: True = hole.
    * uint8 / uint16: a pixel is a hole when above half of full scale (> 127 / > 32767).
    * other integer types: values must lie in 0..255; holes are > 127.
    * float: values must be finite and in [0, 1]; holes are > 0.5.
    * an integer mask whose largest value is 1, 2 or 3 is a 0/1 label mask: nonzero = hole.
    * (H, W, 1..4) masks: alpha is ignored, color masks use their brightest channel.
    """
    arr = _mask_values(mask, source)
    if arr.dtype == np.bool_:
        return arr.copy()
    if np.issubdtype(arr.dtype, np.floating):
        _check_float(arr, source, "mask")
        return arr > 0.5
    top = 65535 if arr.dtype == np.uint16 else 255
    if arr.dtype != np.uint8 and arr.dtype != np.uint16:
        _check_int_range(arr, source, "mask")
    peak = int(arr.max(initial=0))
    if 0 < peak <= LABEL_MAX:
        return arr != 0
    return arr > top // 2


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
    return to_rgb_uint8(_decode(path), str(path), bgr=True)


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
    return hole_mask(load_mask(path, size), str(path))


def _encode(path: Path, image: np.ndarray) -> bytes:
    suffix = path.suffix.lower() or ".png"
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unsupported output format {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., ::-1]  # RGB -> BGR for OpenCV
    try:
        ok, buf = cv2.imencode(suffix, np.ascontiguousarray(arr))
    except cv2.error:
        ok = False
    if not ok:
        raise InputError(f"{path}: could not encode the image as {suffix}")
    return buf.tobytes()


def write_bytes_atomic(path: Path, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in its directory (mode 0666 less the umask).

    ``overwrite=False`` never replaces an existing file (:class:`OutputError` instead). OS failures
    become :class:`OutputError` naming the path.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic and never replaces an existing file
            except FileExistsError:
                raise OutputError(f"{path}: already exists and overwrite is off; not replaced") from None
            except OSError:  # a file system without hard links
                if path.exists():
                    raise OutputError(f"{path}: already exists and overwrite is off; not replaced") from None
                os.replace(tmp, path)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_image(path: str | os.PathLike, image: np.ndarray, *, protect: tuple[str | os.PathLike, ...] = (),
                overwrite: bool = True) -> Path:
    """Write uint8 RGB (or gray) ``image`` to ``path`` atomically, the format following the suffix.

    ``protect`` lists input files that must never be overwritten; writing onto one of them raises
    :class:`InputError`. ``overwrite=False`` refuses to replace an existing file.
    """
    path = Path(path)
    for other in protect:
        if Path(other).exists() and path.exists() and os.path.samefile(path, other):
            raise InputError(f"{path}: refusing to overwrite an input file; choose another output path")
    return write_bytes_atomic(path, _encode(path, image), overwrite=overwrite)


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files (by suffix) directly inside ``directory``, sorted by name (hidden files skipped)."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
