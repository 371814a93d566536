"""EXIF orientation: read the tag from JPEG, PNG and WebP bytes and apply it as image viewers do.

OpenCV's ``IMREAD_UNCHANGED`` (needed to keep 16-bit data) ignores EXIF orientation, and which
formats other flags honour depends on the OpenCV version. So the runtime reads the tag itself,
from the container's EXIF block (JPEG ``APP1 Exif``, PNG ``eXIf``, WebP ``EXIF``), and applies it
to the decoded pixels. TIFF is left to the decoder, which applies its own orientation tag.

Orientation values (TIFF/EXIF tag 0x0112), as the transform that makes the stored pixels upright:
1 none, 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom, 5 transpose, 6 rotate 90
clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
"""

from __future__ import annotations

import struct

import numpy as np

ORIENTATION_TAG = 0x0112


def _from_tiff(block: bytes) -> int:
    """The orientation in a TIFF-structured EXIF block (IFD0), or 1."""
    if len(block) < 8 or block[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if block[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", block, 4)
        (count,) = struct.unpack_from(order + "H", block, ifd)
        for i in range(min(count, 512)):
            tag, kind, _n = struct.unpack_from(order + "HHI", block, ifd + 2 + 12 * i)
            if tag == ORIENTATION_TAG:
                fmt = order + ("H" if kind == 3 else "I" if kind == 4 else "B")
                (value,) = struct.unpack_from(fmt, block, ifd + 2 + 12 * i + 8)
                return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1


def _jpeg_exif(data: memoryview) -> bytes | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no metadata after this
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker == 0xE1 and bytes(data[pos + 4:pos + 10]) == b"Exif\0\0":
            return bytes(data[pos + 10:pos + 2 + length])
        pos += 2 + length
    return None


def _png_exif(data: memoryview) -> bytes | None:
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"eXIf":
            return bytes(data[pos + 8:pos + 8 + length])
        if kind == b"IEND":
            return None
        pos += 12 + length
    return None


def _webp_exif(data: memoryview) -> bytes | None:
    pos = 12
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, pos)
        if kind == b"EXIF":
            block = bytes(data[pos + 8:pos + 8 + length])
            return block[6:] if block.startswith(b"Exif\0\0") else block
        pos += 8 + length + (length & 1)
    return None


def exif_orientation(data: bytes | np.ndarray) -> int:
    """The EXIF orientation (1..8) of encoded JPEG, PNG or WebP bytes; 1 when absent or another format."""
    view = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else memoryview(data.reshape(-1))
    head = bytes(view[:16])
    if head[:3] == b"\xff\xd8\xff":
        block = _jpeg_exif(view)
    elif head[:8] == b"\x89PNG\r\n\x1a\n":
        block = _png_exif(view)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        block = _webp_exif(view)
    else:
        return 1
    return _from_tiff(block) if block else 1


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels (H, W[, C]) upright for EXIF ``orientation`` (a view when possible)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return arr.swapaxes(0, 1)[:, ::-1]
    if orientation == 7:
        return arr.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return arr.swapaxes(0, 1)[::-1]
    return arr
