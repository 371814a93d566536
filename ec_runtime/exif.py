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

import os
import struct
from typing import Callable

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


Reader = Callable[[int, int], bytes]  # read(offset, size) -> at most size bytes


def _jpeg_segments(read: Reader):
    """(marker, offset, first 10 bytes) of each JPEG segment that has a length, up to the scan data."""
    pos = 2
    while True:
        head = read(pos, 10)
        if len(head) < 4 or head[0] != 0xFF:
            return
        marker = head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no metadata after this
            return
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        yield marker, pos, head
        pos += 2 + struct.unpack_from(">H", head, 2)[0]


def _jpeg_exif(read: Reader) -> bytes | None:
    for marker, pos, head in _jpeg_segments(read):
        if marker == 0xE1 and head[4:10] == b"Exif\0\0":
            (length,) = struct.unpack_from(">H", head, 2)
            return read(pos + 10, length - 8)
    return None


def _png_exif(read: Reader) -> bytes | None:
    pos = 8
    while True:  # chunk headers only: the pixel data is skipped, not read
        head = read(pos, 8)
        if len(head) < 8:
            return None
        length, kind = struct.unpack(">I4s", head)
        if kind == b"eXIf":
            return read(pos + 8, length)
        if kind == b"IEND":
            return None
        pos += 12 + length


def _webp_exif(read: Reader) -> bytes | None:
    pos = 12
    while True:
        head = read(pos, 8)
        if len(head) < 8:
            return None
        kind, length = struct.unpack("<4sI", head)
        if kind == b"EXIF":
            block = read(pos + 8, length)
            return block[6:] if block.startswith(b"Exif\0\0") else block
        pos += 8 + length + (length & 1)


def _orientation(read: Reader) -> int:
    head = read(0, 16)
    if head[:3] == b"\xff\xd8\xff":
        block = _jpeg_exif(read)
    elif head[:8] == b"\x89PNG\r\n\x1a\n":
        block = _png_exif(read)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        block = _webp_exif(read)
    else:
        return 1
    return _from_tiff(block) if block else 1


def exif_orientation(data: bytes | np.ndarray) -> int:
    """The EXIF orientation (1..8) of encoded JPEG, PNG or WebP bytes; 1 when absent or another format."""
    view = memoryview(np.ascontiguousarray(data).reshape(-1) if isinstance(data, np.ndarray) else data).cast("B")
    return _orientation(lambda offset, size: bytes(view[offset:offset + max(size, 0)]))


def exif_orientation_of_file(path: str | os.PathLike) -> int:
    """Like :func:`exif_orientation`, reading only the file's headers (not its pixel data)."""
    with open(path, "rb") as f:
        def read(offset: int, size: int) -> bytes:
            f.seek(offset)
            return f.read(max(size, 0))

        return _orientation(read)


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


def _jpeg_size(read: Reader) -> tuple[int, int, int, int] | None:
    for marker, _, head in _jpeg_segments(read):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            if len(head) < 10:
                return None
            bits, h, w, comps = struct.unpack_from(">BHHB", head, 4)
            return w, h, 1 if comps == 1 else 3, 2 if bits > 8 else 1
    return None


def image_size(path: str | os.PathLike) -> tuple[int, int, int, int] | None:
    """(width, height, channels, bytes per channel) from a PNG, JPEG, WebP or BMP header, without
    decoding; None for other formats or unreadable headers. Used to refuse images that cannot fit
    before allocating them."""
    try:
        with open(path, "rb") as f:
            def read(offset: int, size: int) -> bytes:
                f.seek(offset)
                return f.read(max(size, 0))

            head = read(0, 30)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h, depth, color = struct.unpack_from(">IIBB", head, 16)
                channels = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}.get(color, 4)  # as OpenCV decodes them
                return w, h, channels, 2 if depth == 16 else 1
            if head[:3] == b"\xff\xd8\xff":
                return _jpeg_size(read)
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                kind = head[12:16]
                if kind == b"VP8X":
                    w = 1 + int.from_bytes(head[24:27], "little")
                    h = 1 + int.from_bytes(head[27:30], "little")
                    return w, h, 4 if head[20] & 0x10 else 3, 1
                if kind == b"VP8L":
                    bits = int.from_bytes(head[21:25], "little")
                    return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF), 4, 1
                if kind == b"VP8 ":
                    w, h = struct.unpack_from("<HH", head, 26)
                    return w & 0x3FFF, h & 0x3FFF, 3, 1
            if head[:2] == b"BM" and len(head) >= 30:
                w, h = struct.unpack_from("<ii", head, 18)
                (bpp,) = struct.unpack_from("<H", head, 28)
                return abs(w), abs(h), 4 if bpp == 32 else 3, 1
    except (OSError, struct.error):
        return None
    return None
