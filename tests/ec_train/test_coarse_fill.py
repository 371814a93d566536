"""The coarse fill of the ``*-fill`` variants and the generator that corrects it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from ec_train.checkpoints import build_generator, generator_architecture, load_generator
from ec_train.coarse_fill import coarse_fill
from ec_train.networks import FillInpaintGenerator, InpaintGenerator, inpaint_generator_input
from ec_train.registry import create_model
from tests.helpers import photo_and_mask, to_tensors


def _hole(h, w, seed=0, ratio=(0.3, 0.4)):
    _, mask = photo_and_mask("astronaut", max(h, w), seed=seed, hole_ratio=ratio)
    return torch.from_numpy((mask[:h, :w] != 0).astype(np.float32))[None, None]


@pytest.mark.parametrize("size", [(64, 64), (61, 77), (5, 3)])
def test_known_pixels_are_kept_and_the_fill_stays_in_range(size):
    torch.manual_seed(0)
    image = torch.rand(2, 3, *size)
    hole = (torch.rand(2, 1, *size) > 0.6).float()
    out = coarse_fill(image * (1 - hole) + hole, 1 - hole)
    assert out.shape == image.shape
    assert torch.equal(out * (1 - hole), image * (1 - hole))
    assert out.min() >= 0 and out.max() <= 1


def test_a_constant_image_is_filled_with_its_colour_and_a_ramp_stays_a_ramp():
    hole = _hole(64, 64)
    colour = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    assert torch.allclose(coarse_fill(colour * (1 - hole) + hole, 1 - hole), colour, atol=1e-5)
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64)
    filled = coarse_fill(ramp * (1 - hole), 1 - hole)
    # A harmonic fill reproduces a linear function, except near the image border (replicate padding)
    err = float(((filled - ramp).abs() * hole).sum() / (3 * hole.sum()))
    flat = float(((ramp.mean() - ramp).abs() * hole).sum() / (3 * hole.sum()))
    assert err < 0.02 and err < flat / 10


def test_no_known_pixel_gives_zeros_and_one_known_pixel_its_colour():
    image = torch.rand(1, 3, 16, 16)
    assert torch.equal(coarse_fill(image, torch.zeros(1, 1, 16, 16)), torch.zeros(1, 3, 16, 16))
    known = torch.zeros(1, 1, 16, 16)
    known[..., 3, 5] = 1
    assert torch.allclose(coarse_fill(image, known), image[..., 3:4, 5:6].expand(1, 3, 16, 16), atol=1e-5)


def test_the_fill_is_closer_to_the_photo_than_opencv_telea_on_a_held_out_photo():
    """The premise of the variant, on one photo: the coarse fill alone is a strong baseline."""
    img, mask = photo_and_mask("coffee", 128, seed=2, hole_ratio=(0.3, 0.4))
    image, m = to_tensors(img, mask)
    ours = coarse_fill(image * (1 - m) + m, 1 - m)[0].permute(1, 2, 0).numpy() * 255
    telea = cv2.inpaint(img, (mask != 0).astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA).astype(np.float64)
    hole = mask != 0

    def mse(out):
        return float(np.mean((out[hole] - img[hole]) ** 2))

    assert mse(ours) < mse(telea)


def test_an_untrained_fill_generator_returns_the_coarse_fill():
    torch.manual_seed(0)
    generator = create_model("lite-fill", "inpaint").eval()
    assert isinstance(generator, FillInpaintGenerator)
    img, mask = photo_and_mask("chelsea", 64, seed=1, hole_ratio=(0.2, 0.3))
    image, m = to_tensors(img, mask)
    edges = (torch.rand_like(m) > 0.9).float()
    x = inpaint_generator_input(image, edges, m, generator)
    assert x.shape[1] == 5 and inpaint_generator_input(image, edges, m).shape[1] == 4
    with torch.no_grad():
        assert torch.allclose(generator(x), coarse_fill(image * (1 - m) + m, 1 - m), atol=1e-6)


def test_checkpoints_tell_the_fill_generator_from_the_official_one(tmp_path):
    torch.manual_seed(0)
    fill, plain = create_model("lite-fill", "inpaint"), create_model("lite", "inpaint")
    assert generator_architecture(fill.state_dict())["coarse_fill"] is True
    assert generator_architecture(plain.state_dict())["coarse_fill"] is False
    assert type(build_generator(generator_architecture(plain.state_dict()))) is InpaintGenerator
    with torch.no_grad():
        fill.decoder[-1].weight.normal_(0, 0.01)
    torch.save({"iteration": 7, "generator": fill.state_dict()}, tmp_path / "InpaintingModel_gen.pth")
    loaded = load_generator(tmp_path / "InpaintingModel_gen.pth")
    assert isinstance(loaded, FillInpaintGenerator)
    x = torch.rand(1, 5, 32, 32)
    x[:, 4:] = (x[:, 4:] > 0.5).float()
    with torch.no_grad():
        assert torch.equal(loaded(x), fill.eval()(x))
