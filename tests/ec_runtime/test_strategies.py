import numpy as np
import pytest

from ec_runtime.errors import InputError
from ec_runtime.strategies import apply, hole_boxes, inpaint_crop, inpaint_resize


def fake_paint(calls):
    """A stand-in model: fills holes with 200 and records the size it was asked to paint."""

    def paint(image, mask, want_edges):
        calls.append(mask.shape)
        out = image.copy()
        out[mask] = 200
        return out, (mask.astype(np.float32) if want_edges else None)

    return paint


def test_boxes_grow_by_margin_and_merge_overlaps():
    mask = np.zeros((200, 300), bool)
    mask[10:20, 10:20] = True
    mask[10:20, 40:50] = True     # close to the first: merged
    mask[150:160, 250:260] = True  # far away: its own box
    boxes = sorted(hole_boxes(mask, margin=16))
    assert boxes == [(0, 0, 36, 66), (134, 234, 176, 276)]


def test_resize_paints_small_and_pastes_only_the_hole(rng):
    image = rng.integers(0, 256, (1000, 800, 3), dtype=np.uint8)
    mask = np.zeros((1000, 800), bool)
    mask[100:300, 200:260] = True
    calls = []
    out, edges = inpaint_resize(fake_paint(calls), image, mask, True, max_side=500)
    assert calls == [(500, 400)]
    assert np.array_equal(out[~mask], image[~mask])
    # the small mask covers every hole pixel, so the hole's interior is pure model output (its rim
    # is the upscaler's blend of painted and known pixels)
    assert (out[104:296, 204:256] == 200).all()
    assert edges.shape == (1000, 800)


def test_crop_paints_boxes_around_holes(rng):
    image = rng.integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    mask = np.zeros((1400, 1400), bool)
    mask[100:140, 100:180] = True
    mask[1000:1300, 900:1300] = True
    calls = []
    out, _ = inpaint_crop(fake_paint(calls), image, mask, False, max_side=512, margin=64)
    assert sorted(calls) == [(168, 208), (415, 512)]  # the 428x528 box is resized to max_side
    assert np.array_equal(out[~mask], image[~mask])
    assert (out[100:140, 100:180] == 200).all()  # painted at full resolution
    assert (out[1004:1296, 904:1296] == 200).all()


def test_small_images_always_run_at_full_resolution(rng):
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    mask = np.zeros((300, 400), bool)
    mask[10:20, 10:20] = True
    for name in ("original", "resize", "crop"):
        calls = []
        apply(name, fake_paint(calls), image, mask, False, max_side=512)
        assert calls == [(300, 400)]
    with pytest.raises(InputError, match="strategy must be one of"):
        apply("tile", fake_paint([]), image, mask, False)
