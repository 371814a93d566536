"""Hostile images and masks: EXIF orientation, one mask rule for files and the API, float and
integer arrays, non-finite data, and the API validating what the CLI validates."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from ec_runtime.errors import EcRuntimeError, InputError
from ec_runtime.imageio import hole_mask, read_image, read_mask
from ec_runtime.pipeline import Inpainter
from tests.hostile.inpaint_helpers import box_mask, demo_export, inpaint_cli, photo, save, snapshot  # noqa: F401


@pytest.fixture(scope="module")
def painter(demo_export):
    with Inpainter.from_dir(demo_export, threads=1) as p:
        yield p


def _viewer(path) -> np.ndarray:
    """What an image viewer shows: Pillow's decode with the EXIF orientation applied."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


# --- EXIF orientation ---------------------------------------------------------------------------
ORIENTED = [(fmt, o) for fmt in ("jpg", "png", "webp") for o in range(1, 9)] + [("tif", 6), ("tif", 8)]


@pytest.mark.parametrize("fmt,orientation", ORIENTED, ids=[f"{f}-{o}" for f, o in ORIENTED])
def test_exif_orientation_is_applied_like_a_viewer(tmp_path, fmt, orientation):
    stored = photo(24, 40, seed=orientation)
    stored[:6, :10] = (255, 0, 0)  # an asymmetric marker in the stored top-left corner
    kw = {"quality": 95} if fmt in ("jpg", "webp") else {}
    path = save(tmp_path / f"o{orientation}.{fmt}", stored, exif_orientation=orientation, **kw)
    got, want = read_image(path), _viewer(path)
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 3


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp"])
def test_exif_orientation_applies_to_masks_too(tmp_path, fmt):
    upright = box_mask(40, 24, (2, 2, 12, 10))
    stored = np.rot90(upright, 1)  # what a camera stores for orientation 6 (rotate 90 CW to view)
    path = save(tmp_path / f"m.{fmt}", stored, exif_orientation=6, **({"quality": 95} if fmt != "png" else {}))
    assert np.array_equal(read_mask(path), upright)


def test_rotated_jpeg_with_upright_mask_runs_and_writes_upright(tmp_path, demo_export):
    upright = photo(64, 48, seed=3)
    save(tmp_path / "p.jpg", np.rot90(upright, 1), exif_orientation=6, quality=95)
    mask = box_mask(64, 48, (20, 10, 40, 30))
    save(tmp_path / "m.png", mask)
    inpaint_cli([tmp_path / "p.jpg", "--mask", tmp_path / "m.png", "-o", tmp_path / "o.png",
                 "--model", demo_export], code=0)
    out, seen = read_image(tmp_path / "o.png"), read_image(tmp_path / "p.jpg")
    assert out.shape == (64, 48, 3)
    assert np.array_equal(out[~mask], seen[~mask]) and not np.array_equal(out[mask], seen[mask])
    # --resize-mask with a half-size upright mask is not stretched sideways
    save(tmp_path / "half.png", mask[::2, ::2])
    inpaint_cli([tmp_path / "p.jpg", "--mask", tmp_path / "half.png", "-o", tmp_path / "o2.png",
                 "--model", demo_export, "--resize-mask"], code=0)
    assert read_image(tmp_path / "o2.png").shape == (64, 48, 3)


# --- one mask rule --------------------------------------------------------------------------------
def test_zero_one_mask_saved_as_jpeg_keeps_its_hole(tmp_path):
    mask = box_mask(64, 64, (16, 16, 48, 40))
    mask[5:9, :] = mask[:, 50:52] = mask[::7, ::5] = True
    Image.fromarray(mask.astype(np.uint8)).save(tmp_path / "m.jpg", quality=90)
    decoded = cv2.imread(str(tmp_path / "m.jpg"), cv2.IMREAD_UNCHANGED)
    assert decoded.max() == 2  # JPEG ringing pushed the 0/1 mask's maximum to 2
    got = read_mask(tmp_path / "m.jpg")
    solid = box_mask(64, 64, (16, 16, 48, 40))
    solid[5:9, :] = solid[:, 50:52] = True  # single-pixel dots may vanish in JPEG itself
    assert (got & solid).sum() / solid.sum() > 0.95 and (got & ~mask).sum() < 0.06 * mask.sum()
    assert np.array_equal(hole_mask(decoded), got)  # the API and the file rule agree on the same pixels


@pytest.mark.parametrize("quality", [30, 75, 95])
def test_white_on_black_jpeg_mask_survives_compression(tmp_path, quality):
    mask = box_mask(64, 80, (10, 12, 50, 60))
    mask[30:34, :] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.jpg", quality=quality)
    got = read_mask(tmp_path / "m.jpg")
    assert (got & mask).sum() / (got | mask).sum() > 0.97
    assert np.array_equal(hole_mask(cv2.imread(str(tmp_path / "m.jpg"), cv2.IMREAD_UNCHANGED)), got)


def _forms(mask: np.ndarray) -> dict[str, np.ndarray]:
    u8 = mask.astype(np.uint8)
    return {"bool": mask, "u8-0-255": u8 * 255, "u8-0-1": u8, "u16-0-65535": u8.astype(np.uint16) * 65535,
            "u16-0-1": u8.astype(np.uint16), "i64-0-255": u8.astype(np.int64) * 255, "f32-0-1": mask.astype(np.float32),
            "f64-0-1": mask.astype(np.float64), "hw1": (u8 * 255)[..., None], "rgb": np.dstack([u8 * 255] * 3),
            "rgba": np.dstack([u8 * 255] * 3 + [np.full_like(u8, 255)]),
            "red-on-black": np.dstack([u8 * 255, 0 * u8, 0 * u8])}


@pytest.mark.parametrize("form", list(_forms(box_mask())))
def test_every_mask_form_means_the_same_hole(form):
    mask = box_mask()
    assert np.array_equal(hole_mask(_forms(mask)[form]), mask)


def test_soft_mask_uses_half_scale_in_files_and_api(tmp_path):
    values = np.array([[0, 1, 100, 127, 128, 200, 255]] * 16, np.uint8)
    want = [False, False, False, False, True, True, True]
    Image.fromarray(values).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png")[0].tolist() == want
    assert hole_mask(values)[0].tolist() == want
    assert hole_mask(values.astype(np.float32) / 255)[0].tolist() == want


@pytest.mark.parametrize("bad,words", [
    (np.full((48, 64), np.nan, np.float32), "NaN"),
    (np.where(box_mask(), np.inf, 0.0), "infinite"),
    (box_mask().astype(np.float32) * 255, "[0, 1]"),
    (box_mask().astype(np.int16) * -1, "negative"),
    (box_mask().astype(np.int32) * 1000, "uint16"),
    (np.zeros((48, 64, 5), np.uint8), "shape"),
    (np.zeros((2, 48, 64, 1), np.uint8), "shape"),
    (np.array([["a"]]), "type"),
    (box_mask().astype(np.complex64), "type"),
])
def test_bad_masks_are_refused_by_the_api(painter, bad, words):
    with pytest.raises(InputError, match=None) as err:
        painter.inpaint(photo(), bad)
    assert words in str(err.value)


def test_mask_without_a_hole_is_reported(tmp_path, painter, demo_export):
    img = photo()
    with pytest.warns(UserWarning, match="no hole"):
        out = painter.inpaint(img, np.full((48, 64), 100, np.uint8))
    assert np.array_equal(out, img)
    save(tmp_path / "in" / "a.png", img)
    save(tmp_path / "m.png", np.full((48, 64), 100, np.uint8))
    text = inpaint_cli([tmp_path / "in" / "a.png", "--mask", tmp_path / "m.png", "-o", tmp_path / "o.png",
                        "--model", demo_export], code=0)
    assert "no hole" in text and "m.png" in text and "100" in text
    assert np.array_equal(read_image(tmp_path / "o.png"), img)


def test_zero_one_jpeg_mask_in_the_cli_changes_the_image(tmp_path, demo_export):
    img = photo(64, 64, 2)
    save(tmp_path / "a.png", img)
    mask = box_mask(64, 64, (16, 16, 48, 40))
    mask[5:9, :] = mask[:, 50:52] = mask[::7, ::5] = True
    Image.fromarray(mask.astype(np.uint8)).save(tmp_path / "m.jpg", quality=90)
    text = inpaint_cli([tmp_path / "a.png", "--mask", tmp_path / "m.jpg", "-o", tmp_path / "o.png",
                        "--model", demo_export], code=0)
    assert "no hole" not in text
    assert not np.array_equal(read_image(tmp_path / "o.png"), img)


# --- image arrays ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,make,words", [
    ("nan", lambda im: np.where(box_mask()[..., None], np.nan, im / 255.0), "NaN"),
    ("nan-outside-hole", lambda im: np.where(box_mask()[..., None], 0.5, np.nan), "NaN"),
    ("inf", lambda im: np.where(box_mask()[..., None], np.inf, im / 255.0).astype(np.float32), "infinite"),
    ("neg-inf", lambda im: np.full(im.shape, -np.inf), "infinite"),
    ("float-0-255", lambda im: im.astype(np.float64), "[0, 1]"),
    ("float-negative", lambda im: im / 255.0 - 0.5, "[0, 1]"),
    ("float16-over", lambda im: (im / 200.0).astype(np.float16), "[0, 1]"),
    ("int64-over-255", lambda im: im.astype(np.int64) * 4, "0..255"),
    ("int-negative", lambda im: im.astype(np.int32) - 128, "0..255"),
    ("complex", lambda im: im.astype(np.complex64), "type"),
    ("object", lambda im: im.astype(object), "type"),
    ("strings", lambda im: np.full(im.shape, "x"), "type"),
    ("empty", lambda im: np.zeros((0, 0, 3), np.uint8), "16"),
    ("5-channels", lambda im: np.zeros((48, 64, 5), np.uint8), "shape"),
    ("4-d", lambda im: im[None], "shape"),
    ("1-d", lambda im: im.ravel(), "shape"),
    ("path", lambda im: "photo.png", "read_image"),
    ("none", lambda im: None, "array"),
])
def test_bad_images_are_refused_by_the_api(painter, name, make, words):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning on the way to the refusal
        with pytest.raises(InputError) as err:
            painter.inpaint(make(photo()), box_mask())
    assert words in str(err.value), str(err.value)
    with pytest.raises(InputError):
        painter.inpaint_batch([photo(), make(photo())], [box_mask(), box_mask()])


@pytest.mark.parametrize("name,make", [
    ("float32", lambda im: (im / 255.0).astype(np.float32)),
    ("float64", lambda im: im / 255.0),
    ("float-rounding-overshoot", lambda im: np.clip(im / 255.0 * (1 + 1e-7) - 1e-9, -1e-7, None)),
    ("int64", lambda im: im.astype(np.int64)),
    ("uint16", lambda im: im.astype(np.uint16) * 257),
    ("non-contiguous", lambda im: np.asfortranarray(im)),
])
def test_valid_image_forms_give_the_uint8_result(painter, name, make):
    img, mask = photo(), box_mask()
    assert np.array_equal(painter.inpaint(make(img), mask), painter.inpaint(img, mask))


# --- the API validates what the CLI validates --------------------------------------------------------
@pytest.mark.parametrize("kw,words", [
    ({"max_side": 0}, "max_side"), ({"max_side": -512}, "max_side"), ({"max_side": 15}, "16"),
    ({"max_side": 16.5}, "integer"), ({"max_side": "512"}, "integer"), ({"max_side": True}, "integer"),
    ({"threads": 0}, "threads"), ({"threads": -2}, "threads"), ({"threads": 1.5}, "integer"),
    ({"device": -1}, "device"), ({"backend": "cuda"}, "backend"), ({"precision": "fp8"}, "precision"),
    ({"strategy": "tile"}, "strategy"), ({"edge_merge": "none"}, "edge_merge"),
])
def test_from_dir_validates_like_the_cli(demo_export, kw, words):
    with pytest.raises(InputError) as err:
        Inpainter.from_dir(demo_export, **kw)
    assert words in str(err.value)


def test_constructor_and_call_options_are_validated(painter):
    with pytest.raises(InputError, match="margin"):
        Inpainter(painter.stages, backend="onnxruntime", precision="fp32", margin=-1)
    with pytest.raises(InputError, match="max_side"):
        Inpainter(painter.stages, backend="onnxruntime", precision="fp32", max_side=8)
    with pytest.raises(InputError, match="strategy"):
        painter.inpaint(photo(), box_mask(), strategy="tile")
    with pytest.raises(InputError, match="2 images but 1 masks"):
        painter.inpaint_batch([photo(), photo()], [box_mask()])
    with pytest.raises(InputError, match="mask is"):
        painter.inpaint(photo(), box_mask(40, 64))
    with pytest.raises(InputError, match="16"):
        painter.inpaint(photo(8, 64), box_mask(8, 64))
    assert Inpainter.from_dir.__doc__ and "max_side" in Inpainter.from_dir.__doc__


@pytest.mark.parametrize("args,words", [
    (["--max-side", "0"], "--max-side"), (["--max-side", "abc"], "--max-side"), (["--batch", "0"], "--batch"),
    (["--threads", "0"], "--threads"), (["--device", "-1"], "--device"), (["--batch", "1e3"], "--batch"),
    (["--precision", "fp8"], "--precision"), (["--strategy", "tile"], "--strategy"),
])
def test_cli_numeric_and_choice_options(tmp_path, demo_export, args, words):
    save(tmp_path / "a.png", photo())
    save(tmp_path / "m.png", box_mask())
    before = snapshot(tmp_path)
    text = inpaint_cli([tmp_path / "a.png", "--mask", tmp_path / "m.png", "-o", tmp_path / "o.png",
                        "--model", demo_export, *args], code=2)
    assert words in text and snapshot(tmp_path) == before


@pytest.mark.parametrize("name,image,mask,words", [
    ("3d", np.zeros((3, 32, 32), np.float32), np.zeros((1, 1, 32, 32), np.float32), "(N,3,H,W)"),
    ("channels", np.zeros((1, 4, 32, 32), np.float32), np.zeros((1, 1, 32, 32), np.float32), "(N,3,H,W)"),
    ("mismatch", np.zeros((1, 3, 32, 32), np.float32), np.zeros((1, 1, 32, 36), np.float32), "does not match"),
    ("tiny", np.zeros((1, 3, 8, 8), np.float32), np.zeros((1, 1, 8, 8), np.float32), "16"),
    ("nan", np.full((1, 3, 32, 32), np.nan, np.float32), np.zeros((1, 1, 32, 32), np.float32), "finite"),
    ("0-255", np.full((1, 3, 32, 32), 200, np.float32), np.zeros((1, 1, 32, 32), np.float32), "[0, 1]"),
    ("mask-255", np.zeros((1, 3, 32, 32), np.float32), np.full((1, 1, 32, 32), 255, np.float32), "[0, 1]"),
])
def test_model_space_run_validates_its_arrays(painter, name, image, mask, words):
    with pytest.raises(InputError) as err:
        painter.run(image, mask)
    assert words in str(err.value)


@pytest.mark.parametrize("form", ["hw", "hw1", "hw2", "hw3", "list"])
def test_hole_mask_never_changes_the_callers_array(form):
    m8 = box_mask().astype(np.uint8) * 200
    given = {"hw": m8, "hw1": m8[..., None], "hw2": np.dstack([m8, m8]), "hw3": np.dstack([m8] * 3),
             "list": m8.tolist()}[form]
    before = np.array(given, copy=True)
    assert np.array_equal(hole_mask(given), box_mask())
    assert np.array_equal(np.asarray(given), before)
