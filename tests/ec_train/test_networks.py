import pytest
import torch

from ec_train.networks import Discriminator, EdgeGenerator, InpaintGenerator
from ec_train.registry import VARIANTS, create_generators, create_model
from ec_train.errors import ConfigError


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_the_published_summaries():
    assert n_params(EdgeGenerator()) == 10_761_089
    assert n_params(InpaintGenerator()) == 10_774_595
    assert n_params(Discriminator(2)) == 2_762_752
    assert n_params(Discriminator(3)) == 2_763_776


def test_state_dict_keys_follow_the_official_names():
    edge = EdgeGenerator().state_dict()
    for key in ("encoder.1.weight_orig", "encoder.1.weight_u", "encoder.1.weight_v", "encoder.1.bias",
                "middle.3.conv_block.5.weight_v", "middle.7.conv_block.1.weight_orig",
                "decoder.0.weight_orig", "decoder.0.bias", "decoder.7.weight", "decoder.7.bias"):
        assert key in edge, key
    assert "middle.3.conv_block.1.bias" not in edge  # spectral-normed residual convs have no bias
    assert "decoder.7.weight_orig" not in edge  # the last conv has no spectral norm
    inpaint = InpaintGenerator().state_dict()
    assert "middle.0.conv_block.1.bias" in inpaint and "encoder.1.weight" in inpaint
    assert not any(k.endswith("_orig") for k in inpaint)
    dis = Discriminator(2).state_dict()
    assert "conv1.0.weight_orig" in dis and "features.0.weight_orig" in dis and "conv5.0.weight_v" in dis
    assert not any(k.endswith("bias") for k in dis)
    assert "conv1.0.bias" in Discriminator(3, use_spectral_norm=False).state_dict()


def test_weight_init_is_normal_with_std_002():
    torch.manual_seed(0)
    w = InpaintGenerator().middle[0].conv_block[1].weight
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    assert InpaintGenerator().encoder[1].bias.abs().max().item() == 0


def test_output_ranges_and_shapes():
    edge, inpaint = create_generators("lite")
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        e = edge.eval()(x)
        y = inpaint.eval()(torch.rand(2, 4, 32, 48))
    assert e.shape == (2, 1, 32, 48) and 0 <= e.min() and e.max() <= 1
    assert y.shape == (2, 3, 32, 48) and 0 <= y.min() and y.max() <= 1
    out, feats = Discriminator(3).eval()(torch.rand(1, 3, 64, 64))
    assert len(feats) == 5 and out.shape == feats[-1].shape


def test_registry_variants_and_errors():
    assert set(VARIANTS) >= {"edgeconnect", "lite"}
    assert n_params(create_model("lite", "inpaint")) < n_params(create_model("edgeconnect", "inpaint")) / 4
    with pytest.raises(ConfigError, match="known: edgeconnect"):
        create_model("nope", "edge")
    with pytest.raises(ConfigError, match="part"):
        create_model("lite", "body")


def test_every_variant_is_offered_by_the_config_and_the_cli():
    from ec_train.cli import main as train_cli
    from ec_train.config import VARIANT_NAMES

    assert VARIANT_NAMES == tuple(VARIANTS)
    option = next(p for p in train_cli.params if p.name == "variant")
    assert tuple(option.type.choices) == tuple(VARIANTS)
    assert create_model("lite-fill", "edge").state_dict().keys() == create_model("lite", "edge").state_dict().keys()
