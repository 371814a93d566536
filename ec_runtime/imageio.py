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
(0666 less the umask), synced, then renamed into place: a reader never sees half a file, an
interrupted run leaves no partial output, and with ``overwrite=False`` an existing file is never
replaced, even one that appears while the command runs. OpenCV encodes straight into that file,
so no copy of the encoded image is held in memory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import cv2
import numpy as np

from ec_runtime.errors import InputError, OutputError
from ec_runtime.exif import apply_orientation, exif_orientation_of_file, image_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
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


def swap_rb_inplace(arr: np.ndarray) -> np.ndarray:
    """Reverse the channel order of a C-contiguous (H, W, 3) array in place, a band of rows at a time
    (``cv2.cvtColor`` with ``dst=src`` still allocates a full-size temporary)."""
    band = max(1, (1 << 22) // max(1, arr.strides[0]))
    for y in range(0, arr.shape[0], band):
        rows = arr[y:y + band]
        rows[...] = rows[..., ::-1].copy()
    return arr


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


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unsupported output format {suffix or '(none)'!r}; use one of "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    return suffix


def _encode(path: Path, image: np.ndarray, tmp: Path) -> None:
    """Encode ``image`` (already in OpenCV channel order) into the file ``tmp``, in the format of ``path``."""
    try:
        ok = cv2.imwrite(str(tmp), image) if os.name == "posix" else False
        if not ok:
            ok, buf = cv2.imencode(_check_suffix(path), image)
            if ok:
                with open(tmp, "wb") as f:
                    f.write(buf)
    except cv2.error:
        ok = False
    except MemoryError:
        raise OutputError(f"{path}: not enough memory to encode the result") from None
    if not ok:
        raise InputError(f"{path}: could not encode the image as {path.suffix.lower()}")


def _atomic(path: Path, write, overwrite: bool) -> Path:
    """Run ``write(tmp)`` on a fresh temporary file beside ``path``, then move it into place.

    The temporary file gets the usual mode (0666 less the umask), is synced to disk, and is
    removed on any failure. ``overwrite=False`` never replaces an existing file.
    """
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the kernel applies the umask
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic, and never replaces an existing file
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
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def write_bytes_atomic(path: str | os.PathLike, data, overwrite: bool = True) -> Path:
    """Write bytes-like ``data`` to ``path`` atomically (see :func:`write_image`); :class:`OutputError` on failure."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return _atomic(Path(path), write, overwrite)


def write_image(path: str | os.PathLike, image: np.ndarray, *, protect: tuple[str | os.PathLike, ...] = (),
                overwrite: bool = True, inplace: bool = False) -> Path:
    """Write uint8 RGB (or gray) ``image`` to ``path`` atomically, the format following the suffix.

    ``protect`` lists input files that must never be overwritten; writing onto one of them raises
    :class:`InputError`. ``overwrite=False`` refuses to replace an existing file
    (:class:`OutputError`). ``inplace=True`` lets the RGB -> BGR reorder that OpenCV needs happen
    in ``image`` itself (restored before returning) instead of in an image-sized copy.
    """
    path = Path(path)
    for other in protect:
        if Path(other).exists() and path.exists() and os.path.samefile(path, other):
            raise InputError(f"{path}: refusing to overwrite an input file; choose another output path")
    _check_suffix(path)
    arr = np.asarray(image)
    swap = arr.ndim == 3 and arr.shape[2] == 3
    in_place = swap and inplace and arr.flags.c_contiguous and arr.flags.writeable and arr.dtype == np.uint8
    if in_place:
        swap_rb_inplace(arr)
        try:
            return _atomic(path, lambda tmp: _encode(path, arr, tmp), overwrite)
        finally:
            swap_rb_inplace(arr)
    bgr = np.ascontiguousarray(arr[..., ::-1] if swap else arr)
    return _atomic(path, lambda tmp: _encode(path, bgr, tmp), overwrite)


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files (by suffix) directly inside ``directory``, sorted by name (hidden files skipped)."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
