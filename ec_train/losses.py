"""EdgeConnect's training losses: adversarial (nsgan/lsgan/hinge), feature matching, perceptual, style.

Weights are applied by the trainer (see :class:`ec_train.config.TrainConfig`); these functions
return unweighted values. Losses are computed in float32 even under AMP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ec_train.errors import ConfigError

GAN_LOSSES = ("nsgan", "lsgan", "hinge")
PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")


class AdversarialLoss(nn.Module):
    """The three GAN objectives of the official recipe.

    ``nsgan`` is binary cross-entropy on the discriminator's sigmoid output, ``lsgan`` the mean
    squared error on it, ``hinge`` works on raw scores (the discriminator then has no sigmoid).
    ``for_discriminator`` selects the hinge form used for the discriminator update.
    """

    def __init__(self, kind: str = "nsgan"):
        super().__init__()
        if kind not in GAN_LOSSES:
            raise ConfigError(f"unknown GAN loss {kind!r}; expected one of {', '.join(GAN_LOSSES)}")
        self.kind = kind

    @property
    def discriminator_uses_sigmoid(self) -> bool:
        return self.kind != "hinge"

    def forward(self, outputs: torch.Tensor, is_real: bool, for_discriminator: bool = False) -> torch.Tensor:
        outputs = outputs.float()
        if self.kind == "hinge":
            if for_discriminator:
                return F.relu(1 - outputs).mean() if is_real else F.relu(1 + outputs).mean()
            return -outputs.mean()
        if self.kind == "nsgan":
            # binary cross-entropy written out (log clamped at -100 like nn.BCELoss): NaN inputs give a
            # NaN loss the trainer reports instead of an exception, and it is autocast-safe.
            log_p = torch.log(outputs if is_real else 1 - outputs).clamp_min(-100)
            return -log_p.mean()
        return F.mse_loss(outputs, torch.full_like(outputs, 1.0 if is_real else 0.0))


def feature_matching_loss(fake_features: list[torch.Tensor], real_features: list[torch.Tensor]) -> torch.Tensor:
    """Sum over the discriminator's conv1..conv5 features of L1(fake, real.detach())."""
    loss = fake_features[0].new_zeros((), dtype=torch.float32)
    for fake, real in zip(fake_features, real_features):
        loss = loss + F.l1_loss(fake.float(), real.detach().float())
    return loss


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``f fᵀ / (c·h·w)`` per sample, for (N, C, H, W) features."""
    n, c, h, w = features.shape
    f = features.float().reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def perceptual_loss(fake: dict[str, torch.Tensor], real: dict[str, torch.Tensor]) -> torch.Tensor:
    """L1 between VGG19 activations relu1_1 .. relu5_1 (weight 1 each), as in the official recipe."""
    return sum(F.l1_loss(fake[k].float(), real[k].float()) for k in PERCEPTUAL_LAYERS)


def style_loss(fake: dict[str, torch.Tensor], real: dict[str, torch.Tensor]) -> torch.Tensor:
    """L1 between Gram matrices of relu2_2, relu3_4, relu4_4 and relu5_2.

    The trainer feeds the VGG features of ``out*m`` and ``img*m`` (hole region only).
    """
    return sum(F.l1_loss(gram_matrix(fake[k]), gram_matrix(real[k])) for k in STYLE_LAYERS)


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The recipe's reconstruction term: ``L1(out, img) / mean(mask)`` (whole image, rescaled by hole size)."""
    return F.l1_loss(output.float(), target.float()) / mask.float().mean().clamp_min(1e-8)
