"""Official-format round trips, against an independent reconstruction of the original networks."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import spectral_norm

from ec_train.checkpoints import (TRAIN_FORMAT, atomic_save, load_discriminator, load_generator,
                                  save_official)
from ec_train.errors import CheckpointError
from ec_train.networks import edge_generator_input, inpaint_generator_input, rgb_to_gray
from tests.helpers import photo_and_mask, to_tensors


def _reference_generator(in_ch, out_ch, sn):
    """The original architecture, written independently as nested Sequentials (blocks as modules)."""
    wrap = spectral_norm if sn else (lambda m: m)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_block = nn.Sequential(
                nn.ReflectionPad2d(2), wrap(nn.Conv2d(256, 256, 3, dilation=2, bias=not sn)),
                nn.InstanceNorm2d(256), nn.ReLU(True), nn.ReflectionPad2d(1),
                wrap(nn.Conv2d(256, 256, 3, bias=not sn)), nn.InstanceNorm2d(256))

        def forward(self, x):
            return x + self.conv_block(x)

    class Gen(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(
                nn.ReflectionPad2d(3), wrap(nn.Conv2d(in_ch, 64, 7)), nn.InstanceNorm2d(64), nn.ReLU(True),
                wrap(nn.Conv2d(64, 128, 4, 2, 1)), nn.InstanceNorm2d(128), nn.ReLU(True),
                wrap(nn.Conv2d(128, 256, 4, 2, 1)), nn.InstanceNorm2d(256), nn.ReLU(True))
            self.middle = nn.Sequential(*[Block() for _ in range(8)])
            self.decoder = nn.Sequential(
                wrap(nn.ConvTranspose2d(256, 128, 4, 2, 1)), nn.InstanceNorm2d(128), nn.ReLU(True),
                wrap(nn.ConvTranspose2d(128, 64, 4, 2, 1)), nn.InstanceNorm2d(64), nn.ReLU(True),
                nn.ReflectionPad2d(3), nn.Conv2d(64, out_ch, 7))

        def forward(self, x):
            return self.decoder(self.middle(self.encoder(x)))

    torch.manual_seed(in_ch)
    g = Gen()
    for p in g.parameters():  # non-trivial weights, then a few power iterations to move u and v
        nn.init.normal_(p, 0, 0.02)
    if sn:
        g.train()
        with torch.no_grad():
            for _ in range(2):
                g(torch.rand(1, in_ch, 32, 32))
    return g.eval()


@pytest.fixture(scope="module")
def inputs():
    img, mask = photo_and_mask("astronaut", 256)
    image, m = to_tensors(img, mask)
    gray = rgb_to_gray(image)
    edges = (torch.rand_like(gray) > 0.9).float()
    return edge_generator_input(gray, edges, m), inpaint_generator_input(image, edges, m)


@pytest.mark.parametrize("kind", ["edge", "inpaint"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_checkpoint_round_trip(tmp_path, inputs, kind, prefix):
    ref = _reference_generator(3 if kind == "edge" else 4, 1 if kind == "edge" else 3, kind == "edge")
    sd = {prefix + k: v for k, v in ref.state_dict().items()}
    path = tmp_path / ("EdgeModel_gen.pth" if kind == "edge" else "InpaintingModel_gen.pth")
    torch.save({"iteration": 1234, "generator": sd}, path)
    model = load_generator(path)
    x = inputs[0] if kind == "edge" else inputs[1]
    with torch.no_grad():
        raw = ref(x)
        expected = torch.sigmoid(raw) if kind == "edge" else (torch.tanh(raw) + 1) / 2
        got = model(x)
    assert (got - expected).abs().max().item() <= 1e-6


def test_kind_mixups_and_bad_files_have_clear_errors(tmp_path):
    edge_path = tmp_path / "EdgeModel_gen.pth"
    save_official(_reference_generator(3, 1, True), None, tmp_path, iteration=5)
    assert load_generator(edge_path, kind="edge") is not None
    with pytest.raises(CheckpointError, match="holds the edge network, not the inpaint"):
        load_generator(edge_path, kind="inpaint")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_generator(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_generator(junk)
    other = tmp_path / "other.pth"
    torch.save({"state": {"a": 1}}, other)
    with pytest.raises(CheckpointError, match="not an EdgeConnect checkpoint"):
        load_generator(other)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    from ec_train.checkpoints import load_into
    from ec_train.networks import InpaintGenerator

    sd = InpaintGenerator(residual_blocks=2, base_channels=8).state_dict()
    sd.pop("decoder.7.bias")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing keys: decoder\.7\.bias.*unexpected keys: extra\.weight"):
        load_into(InpaintGenerator(residual_blocks=2, base_channels=8), sd, "x.pth")


def test_discriminators_and_training_format(tmp_path):
    from ec_train.registry import create_model

    dis = create_model("edgeconnect", "edge_discriminator")
    torch.save({"discriminator": {"module." + k: v for k, v in dis.state_dict().items()}}, tmp_path / "EdgeModel_dis.pth")
    loaded = load_discriminator(tmp_path / "EdgeModel_dis.pth", "edge_discriminator")
    assert set(loaded.state_dict()) == set(dis.state_dict())
    with pytest.raises(CheckpointError, match="not the inpaint discriminator"):
        load_discriminator(tmp_path / "EdgeModel_dis.pth", "inpaint_discriminator")

    edge, inpaint = create_model("lite", "edge"), create_model("lite", "inpaint")
    ckpt = {"format": TRAIN_FORMAT, "iteration": 3, "config": {},
            "models": {"edge_generator": edge.state_dict(), "inpaint_generator": inpaint.state_dict()}}
    atomic_save(ckpt, tmp_path / "train.pth")
    with pytest.raises(CheckpointError, match="say which"):
        load_generator(tmp_path / "train.pth")
    got = load_generator(tmp_path / "train.pth", kind="inpaint")
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(got(x), inpaint.eval()(x))
    assert not list(tmp_path.glob(".*.tmp"))
    assert np.isclose(len(list(tmp_path.iterdir())), 2)
