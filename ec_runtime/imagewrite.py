"""Writing images safely: atomically, with the usual file modes, never over a file we must keep.

Writes go to a temporary file in the destination directory, created with the usual permissions
(0666 less the umask), synced, then renamed into place: a reader never sees half a file, an
interrupted run leaves no partial output, and with ``overwrite=False`` an existing file is never
replaced, even one that appears while the command runs. OpenCV encodes straight into that file,
so no copy of the encoded image is held in memory. (Re-exported by :mod:`ec_runtime.imageio`.)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import cv2
import numpy as np

from ec_runtime.errors import InputError, OutputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def swap_rb_inplace(arr: np.ndarray) -> np.ndarray:
    """Reverse the channel order of a C-contiguous (H, W, 3) array in place, a band of rows at a time
    (``cv2.cvtColor`` with ``dst=src`` still allocates a full-size temporary)."""
    band = max(1, (1 << 22) // max(1, arr.strides[0]))
    for y in range(0, arr.shape[0], band):
        rows = arr[y:y + band]
        rows[...] = rows[..., ::-1].copy()
    return arr


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
