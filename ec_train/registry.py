"""Named model variants, in the spirit of ``timm.create_model``.

``edgeconnect`` is the paper's configuration (8 dilated residual blocks, 64 base channels).
``lite`` is a small variant (4 blocks, 32 base channels, ~1/8 of the compute) for demos, fast
tests and CPU deployment. Each variant also scales its discriminators (``discriminator_channels``):
the paper's 64-channel PatchGAN has 2.76M parameters, ``lite`` uses 32 channels (0.69M), so a
training step is not dominated by a discriminator four times the size of its generator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from ec_train.errors import ConfigError
from ec_train.networks import Discriminator, EdgeGenerator, InpaintGenerator, inpaint_generator_class


@dataclass(frozen=True)
class Variant:
    """Architecture hyper-parameters shared by both generators (and the discriminators' width)."""

    name: str
    residual_blocks: int
    base_channels: int
    description: str
    discriminator_channels: int = 64
    coarse_fill: bool = False  # stage 2 corrects a smooth coarse fill (FillInpaintGenerator)

    def to_dict(self) -> dict:
        return asdict(self)


VARIANTS: dict[str, Variant] = {
    "edgeconnect": Variant("edgeconnect", 8, 64, "the paper's generators (10.8M parameters each)"),
    "lite": Variant("lite", 4, 32, "4 residual blocks, 32 base channels: fast CPU demo and tests",
                    discriminator_channels=32),
    "lite-fill": Variant("lite-fill", 4, 32, "lite, with stage 2 correcting a smooth coarse fill of the hole "
                         "(the shipped demo model)", discriminator_channels=32, coarse_fill=True),
}

PARTS = ("edge", "inpaint", "edge_discriminator", "inpaint_discriminator")


def get_variant(name: str) -> Variant:
    """Look a variant up by name, with an error that lists the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown model variant {name!r}; known: {', '.join(VARIANTS)}") from None


def create_model(variant: str = "edgeconnect", part: str = "edge", use_spectral_norm: bool = True) -> nn.Module:
    """Build one network of a named variant.

    ``part`` is one of ``edge``, ``inpaint``, ``edge_discriminator``, ``inpaint_discriminator``.
    ``use_spectral_norm`` applies to the edge generator and the discriminators (the official
    configuration uses it on all three).
    """
    v = get_variant(variant)
    if part == "edge":
        return EdgeGenerator(v.residual_blocks, use_spectral_norm, v.base_channels)
    if part == "inpaint":
        return inpaint_generator_class(v.coarse_fill)(v.residual_blocks, v.base_channels)
    if part == "edge_discriminator":
        return Discriminator(2, use_sigmoid=True, use_spectral_norm=use_spectral_norm,
                             base_channels=v.discriminator_channels)
    if part == "inpaint_discriminator":
        return Discriminator(3, use_sigmoid=True, use_spectral_norm=use_spectral_norm,
                             base_channels=v.discriminator_channels)
    raise ConfigError(f"unknown model part {part!r}; expected one of {', '.join(PARTS)}")


def create_generators(variant: str = "edgeconnect") -> tuple[EdgeGenerator, InpaintGenerator]:
    """The (edge, inpaint) generator pair of a named variant."""
    return create_model(variant, "edge"), create_model(variant, "inpaint")
