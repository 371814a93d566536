import os

import cv2
import numpy as np
import pytest
from PIL import Image

from ec_runtime.errors import InputError
from ec_runtime.imageio import hole_mask, read_image, read_mask, write_image


@pytest.fixture
def rgb(rng):
    return rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)


def test_rgb_png_and_jpeg_round_trip(tmp_path, rgb):
    path = write_image(tmp_path / "a.png", rgb)
    assert np.array_equal(read_image(path), rgb)  # RGB order preserved through OpenCV's BGR
    assert read_image(write_image(tmp_path / "a.jpg", rgb)).shape == (20, 24, 3)


def test_gray_rgba_16bit_and_palette_become_rgb(tmp_path, rgb):
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert np.array_equal(read_image(tmp_path / "g.png"), np.repeat(gray[..., None], 3, 2))
    Image.fromarray(np.dstack([rgb, np.full(gray.shape, 9, np.uint8)]), "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    wide = np.minimum(rgb.astype(np.uint32) * 257 + 100, 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "w.png"), wide[..., ::-1])
    assert np.array_equal(read_image(tmp_path / "w.png"), rgb)
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    assert pal.mode == "P"
    assert np.array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))


def test_mask_threshold_is_127_and_zero_one_masks_work(tmp_path):
    values = np.array([[0, 100, 127, 128, 200, 255]] * 16, np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png")[0].tolist() == [False, False, False, True, True, True]
    Image.fromarray((values > 127).astype(np.uint8)).save(tmp_path / "01.png")
    assert read_mask(tmp_path / "01.png")[0].tolist() == [False, False, False, True, True, True]
    Image.fromarray(np.dstack([values] * 3)).save(tmp_path / "rgb_mask.png")
    assert read_mask(tmp_path / "rgb_mask.png")[0].tolist() == [False, False, False, True, True, True]
    # one rule for arrays and files: above half scale, or nonzero in a 0/1 (max <= 3) label mask
    assert hole_mask(np.array([[0, 1, 255]], np.uint8)).tolist() == [[False, False, True]]
    assert hole_mask(np.array([[0, 1, 2]], np.uint8)).tolist() == [[False, True, True]]


def test_resize_mask_uses_nearest_neighbour(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    big = read_mask(tmp_path / "m.png", size=(32, 16))
    assert big.shape == (32, 16) and big[:16].all() and not big[16:].any()


def test_corrupt_missing_and_non_image_files_name_the_path(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name in ("bad.png", "notes.txt", "empty.jpg"):
        with pytest.raises(InputError, match=str(tmp_path / name)):
            read_image(tmp_path / name)
    with pytest.raises(InputError, match="no such file"):
        read_mask(tmp_path / "missing.png")


def test_writes_are_atomic_and_never_overwrite_inputs(tmp_path, rgb, monkeypatch):
    src = write_image(tmp_path / "in.png", rgb)
    with pytest.raises(InputError, match="refusing to overwrite an input"):
        write_image(src, rgb[::-1], protect=(src,))
    assert np.array_equal(read_image(src), rgb)
    # a failure during the write leaves the old file and no temporary behind
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_image(tmp_path / "in.png", rgb[::-1])
    assert np.array_equal(read_image(src), rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    with pytest.raises(InputError, match="unsupported output format"):
        write_image(tmp_path / "x.gif", rgb)
