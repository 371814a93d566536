"""Large images: bounded peak memory with the crop strategy, clear errors when an image cannot fit,
and the memory-saving paths giving the same pixels as the plain ones."""

from __future__ import annotations

import struct
import sys
import zlib

import cv2
import numpy as np
import pytest

from ec_runtime import strategies
from ec_runtime.errors import InputError
from ec_runtime.imageio import read_image, to_rgb_uint8
from ec_runtime.pipeline import Inpainter
from tests.hostile.inpaint_helpers import (DEMO, box_mask, demo_export, inpaint_cli, peak_rss_of_inpaint,  # noqa: F401
                                           photo, run_process, save, snapshot)


@pytest.fixture(scope="module")
def painter(demo_export):
    with Inpainter.from_dir(demo_export, threads=1) as p:
        yield p


def _png_header_only(path, w: int, h: int) -> None:
    """A PNG whose header claims w x h RGB pixels (no pixel data follows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc")
def test_peak_memory_of_a_5000px_png_with_a_small_hole(tmp_path):
    """Peak RSS beyond a run whose crop is the same size stays under 2x the decoded image (was 3.7x)."""
    side = 5000
    y = np.linspace(0, 255, side, dtype=np.float32)
    img = np.empty((side, side, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = y[:, None], y[None, :], 128
    cv2.imwrite(str(tmp_path / "big.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    mask = np.zeros((side, side), np.uint8)
    mask[2500:2540, 1666:1706] = 255
    cv2.imwrite(str(tmp_path / "mbig.png"), mask)
    del img, mask
    small = np.full((400, 400, 3), 100, np.uint8)
    cv2.imwrite(str(tmp_path / "small.png"), small)
    cv2.imwrite(str(tmp_path / "msmall.png"), box_mask(400, 400, (180, 180, 220, 220)).astype(np.uint8) * 255)
    # both runs inpaint a 296x296 box shrunk to 64 px, so the models' memory cancels out
    common = ["--model", DEMO, "--max-side", "64", "--threads", "1"]
    base, p0 = peak_rss_of_inpaint([tmp_path / "small.png", "--mask", tmp_path / "msmall.png", "-o",
                                    tmp_path / "o_small.png", *common])
    peak, p1 = peak_rss_of_inpaint([tmp_path / "big.png", "--mask", tmp_path / "mbig.png", "-o",
                                    tmp_path / "o_big.bmp", *common])
    assert p0.returncode == 0 and p1.returncode == 0, p1.stderr[-2000:]
    decoded = side * side * 3
    assert (peak - base) / decoded < 2.0, f"peak {peak >> 20} MiB, same-crop baseline {base >> 20} MiB"
    out = cv2.imread(str(tmp_path / "o_big.bmp"))
    assert out.shape == (side, side, 3)


def test_coarse_hole_boxes_equal_exact_ones(monkeypatch):
    rng = np.random.default_rng(0)
    for trial in range(12):
        h, w = rng.integers(200, 700, 2)
        mask = np.zeros((h, w), bool)
        for _ in range(rng.integers(1, 9)):
            y, x = rng.integers(0, h - 5), rng.integers(0, w - 5)
            mask[y:y + rng.integers(1, 60), x:x + rng.integers(1, 60)] = True
        margin = int(rng.choice([1, 5, 16, 40, 128]))
        monkeypatch.setattr(strategies, "COARSE_ABOVE", 10 ** 12)
        exact = sorted(strategies.hole_boxes(mask, margin))
        monkeypatch.setattr(strategies, "COARSE_ABOVE", 0)
        coarse = sorted(strategies.hole_boxes(mask, margin))
        assert coarse == exact, (trial, margin)


def test_inplace_inpaint_matches_and_reuses_the_array(painter):
    small_side = Inpainter(painter.stages, backend=painter.backend, precision="fp32", max_side=64)
    img, mask = photo(160, 200, 5), box_mask(160, 200, (40, 50, 70, 90))
    for strategy in ("crop", "resize"):
        want = small_side.inpaint(img, mask, strategy=strategy)
        work = img.copy()
        got = small_side.inpaint(work, mask, strategy=strategy, inplace=True)
        assert got is work and np.array_equal(got, want)
    frozen = img.copy()
    frozen.flags.writeable = False
    assert np.array_equal(small_side.inpaint(frozen, mask, inplace=True), want) and np.array_equal(frozen, img)


def test_16bit_conversion_rounds_like_before():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    assert np.array_equal(to_rgb_uint8(values)[..., 0], ((values.astype(np.uint32) + 128) // 257).astype(np.uint8))


def test_image_above_the_decoder_limit_is_refused_from_its_header(tmp_path, demo_export):
    _png_header_only(tmp_path / "huge.png", 60000, 60000)
    save(tmp_path / "m.png", box_mask())
    text = inpaint_cli([tmp_path / "huge.png", "--mask", tmp_path / "m.png", "-o", tmp_path / "o.png",
                        "--model", demo_export], code=1)
    assert "60000x60000" in text and "OPENCV_IO_MAX_IMAGE_PIXELS" in text and not (tmp_path / "o.png").exists()


def test_image_that_cannot_fit_in_memory_is_refused_before_decoding(tmp_path, demo_export, monkeypatch):
    import ec_runtime.imageio as imageio

    save(tmp_path / "a.png", photo(400, 600))
    save(tmp_path / "m.png", box_mask(400, 600))
    monkeypatch.setattr(imageio, "available_memory", lambda: 100_000)  # a machine with 100 kB free
    text = inpaint_cli([tmp_path / "a.png", "--mask", tmp_path / "m.png", "-o", tmp_path / "o.png",
                        "--model", demo_export], code=1)
    assert "600x400 needs about" in text and "available" in text and not (tmp_path / "o.png").exists()


def test_running_out_of_memory_while_inpainting_is_a_clean_error(tmp_path, painter, demo_export, monkeypatch):
    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(strategies, "inpaint_crop", no_memory)
    small_side = Inpainter(painter.stages, backend=painter.backend, precision="fp32", max_side=32)
    with pytest.raises(InputError, match="not enough memory"):
        small_side.inpaint(photo(), box_mask())
    save(tmp_path / "in" / "a.png", photo())
    save(tmp_path / "m.png", box_mask())
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "out", "--model", demo_export,
                        "--max-side", "32"], code=1)
    assert "not enough memory" in text and "a.png" in text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_real_process_reports_a_corrupt_file_in_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    save(tmp_path / "m.png", box_mask())
    proc = run_process(["-m", "ec_runtime.cli", tmp_path / "bad.png", "--mask", tmp_path / "m.png",
                        "-o", tmp_path / "o.png", "--model", DEMO])
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "[ERROR" not in proc.stderr and "WARN" not in proc.stderr, proc.stderr
    assert "bad.png" in proc.stderr and not (tmp_path / "o.png").exists()


def test_oriented_tiff_is_read_upright(tmp_path):
    stored = photo(24, 40, 1)
    path = save(tmp_path / "t.tif", stored, exif_orientation=6)
    assert np.array_equal(read_image(path), np.rot90(stored, -1))
    assert snapshot(tmp_path)  # the file is still there, untouched by reading


@pytest.mark.parametrize("where", ["read", "prepare", "write"])
def test_memory_errors_anywhere_fail_only_their_image(tmp_path, demo_export, monkeypatch, where):
    import ec_runtime.imageio as imageio
    import ec_runtime.imagewrite as imagewrite
    import ec_runtime.pipeline as pipeline

    for stem in "ab":
        save(tmp_path / "in" / f"{stem}.png", photo(seed=ord(stem)))
    save(tmp_path / "m.png", box_mask())
    target = {"read": (imageio, "read_image"), "prepare": (pipeline, "to_rgb_uint8"), "write": (imagewrite, "_encode")}
    module, name = target[where]
    real = getattr(module, name)

    def flaky(*args, **kw):
        if "a.png" in str(args[0]) or (where == "prepare" and flaky.calls == 0):
            flaky.calls += 1
            raise MemoryError
        return real(*args, **kw)

    flaky.calls = 0
    monkeypatch.setattr(module, name, flaky)
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "out", "--model", demo_export],
                       code=1)
    assert "1/2" in text and "not enough memory" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png"]


def test_windowed_resize_upscale_matches_the_full_one(monkeypatch):
    """Above COARSE_ABOVE pixels the resize strategy upscales only the hole's window (no full-size copy);
    its pixels stay within one level of a full cv2.resize."""
    def paint(image, mask, want_edges):
        out = image.copy()
        yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
        out[mask] = ((yy * 3 + xx * 5) % 256).astype(np.uint8)[mask][:, None]
        return out, None

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2100, 2000, 3), dtype=np.uint8)
    mask = np.zeros((2100, 2000), bool)
    mask[700:1100, 300:900] = True
    mask[1500:1510, 1800:2000] = True
    windowed, _ = strategies.inpaint_resize(paint, img, mask, False, 512)
    work = img.copy()
    inplace, _ = strategies.inpaint_resize(paint, work, mask, False, 512, out=work)
    monkeypatch.setattr(strategies, "COARSE_ABOVE", 10 ** 12)
    full, _ = strategies.inpaint_resize(paint, img, mask, False, 512)
    assert np.abs(windowed.astype(int) - full.astype(int)).max() <= 1
    assert inplace is work and np.array_equal(inplace, windowed)
    assert np.array_equal(windowed[~mask], img[~mask])
