"""The EdgeConnect networks, reproduced so that official checkpoints load unchanged.

Module names and ``nn.Sequential`` indices are part of the checkpoint format: they give the
state-dict keys (``encoder.1.weight_orig``, ``middle.3.conv_block.5.weight_v``,
``decoder.7.bias``, ``conv1.0.weight_orig`` / ``features.0.weight_orig``). Do not reorder layers.

Spectral normalisation uses ``torch.nn.utils.spectral_norm`` (the hook-based form), because its
``weight_orig`` / ``weight_u`` / ``weight_v`` keys are the ones the official files hold.
"""

from __future__ import annotations

import torch
from torch import nn

from ec_train.coarse_fill import coarse_fill

INIT_STD = 0.02


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return nn.utils.spectral_norm(module) if enabled else module


def init_weights(module: nn.Module, std: float = INIT_STD) -> None:
    """Initialise conv weights with N(0, std) and biases with 0 (the official 'normal' init).

    Called before spectral norm is applied, so it reaches the real weight.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResnetBlock(nn.Module):
    """Dilated residual block: ``x + conv_block(x)`` with two 3x3 convs and InstanceNorm."""

    def __init__(self, dim: int, dilation: int = 2, use_spectral_norm: bool = False):
        super().__init__()
        bias = not use_spectral_norm
        conv1 = nn.Conv2d(dim, dim, kernel_size=3, padding=0, dilation=dilation, bias=bias)
        conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=0, dilation=1, bias=bias)
        init_weights(conv1)
        init_weights(conv2)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            _sn(conv1, use_spectral_norm),
            nn.InstanceNorm2d(dim, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            _sn(conv2, use_spectral_norm),
            nn.InstanceNorm2d(dim, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class _Generator(nn.Module):
    """Shared encoder / dilated-residual middle / decoder body of both generators."""

    in_channels: int
    out_channels: int

    def __init__(self, residual_blocks: int, base_channels: int, use_spectral_norm: bool):
        super().__init__()
        c1, c2, c3 = base_channels, base_channels * 2, base_channels * 4
        sn = use_spectral_norm
        enc = [
            nn.Conv2d(self.in_channels, c1, kernel_size=7, padding=0),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2, padding=1),
            nn.Conv2d(c2, c3, kernel_size=4, stride=2, padding=1),
        ]
        dec = [
            nn.ConvTranspose2d(c3, c2, kernel_size=4, stride=2, padding=1),
            nn.ConvTranspose2d(c2, c1, kernel_size=4, stride=2, padding=1),
            nn.Conv2d(c1, self.out_channels, kernel_size=7, padding=0),
        ]
        for m in enc + dec:
            init_weights(m)
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            _sn(enc[0], sn),
            nn.InstanceNorm2d(c1, track_running_stats=False),
            nn.ReLU(True),
            _sn(enc[1], sn),
            nn.InstanceNorm2d(c2, track_running_stats=False),
            nn.ReLU(True),
            _sn(enc[2], sn),
            nn.InstanceNorm2d(c3, track_running_stats=False),
            nn.ReLU(True),
        )
        self.middle = nn.Sequential(
            *[ResnetBlock(c3, dilation=2, use_spectral_norm=sn) for _ in range(residual_blocks)]
        )
        self.decoder = nn.Sequential(
            _sn(dec[0], sn),
            nn.InstanceNorm2d(c2, track_running_stats=False),
            nn.ReLU(True),
            _sn(dec[1], sn),
            nn.InstanceNorm2d(c1, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(3),
            dec[2],
        )

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.middle(self.encoder(x)))


class EdgeGenerator(_Generator):
    """Stage 1. Input ``cat(gray*(1-m)+m, edges*(1-m), m)`` (N,3,H,W); output edge probability (N,1,H,W).

    Spectral norm on every conv except ``decoder.7``; H and W must be multiples of 4.
    """

    in_channels = 3
    out_channels = 1

    def __init__(self, residual_blocks: int = 8, use_spectral_norm: bool = True, base_channels: int = 64):
        super().__init__(residual_blocks, base_channels, use_spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


class InpaintGenerator(_Generator):
    """Stage 2. Input ``cat(img*(1-m)+m, edges)`` (N,4,H,W); output RGB in [0,1] (N,3,H,W)."""

    in_channels = 4
    out_channels = 3

    def __init__(self, residual_blocks: int = 8, base_channels: int = 64):
        super().__init__(residual_blocks, base_channels, use_spectral_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(self.body(x)) + 1) / 2


class FillInpaintGenerator(_Generator):
    """Stage 2 of the ``*-fill`` variants: a learned correction added to a smooth coarse fill.

    Input ``cat(img*(1-m)+m, edges, m)`` (N,5,H,W); output ``clamp(fill + body(cat(fill, edges, m)), 0, 1)``
    where ``fill`` is :func:`ec_train.coarse_fill.coarse_fill` of the known pixels. The last conv
    starts at zero, so an untrained network returns the coarse fill itself. Its first conv takes 5
    channels, which is how a checkpoint tells this generator from the official 4-channel one.
    """

    in_channels = 5
    out_channels = 3

    def __init__(self, residual_blocks: int = 8, base_channels: int = 64):
        super().__init__(residual_blocks, base_channels, use_spectral_norm=False)
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image, edges, mask = x[:, :3], x[:, 3:4], x[:, 4:5]
        fill = coarse_fill(image, 1 - mask)
        return (fill + self.body(torch.cat([fill, edges, mask], dim=1))).clamp(0, 1)


def inpaint_generator_class(coarse_fill: bool) -> type[_Generator]:
    """The stage-2 class: :class:`FillInpaintGenerator` for the ``*-fill`` variants, else :class:`InpaintGenerator`."""
    return FillInpaintGenerator if coarse_fill else InpaintGenerator


class Discriminator(nn.Module):
    """70x70 PatchGAN. Returns ``(output, [conv1..conv5 features])``.

    ``features`` is the same module as ``conv1``, as in the official code, so a state dict holds
    both ``conv1.0.*`` and ``features.0.*``.
    """

    def __init__(self, in_channels: int, use_sigmoid: bool = True, use_spectral_norm: bool = True,
                 base_channels: int = 64):
        super().__init__()
        self.use_sigmoid = use_sigmoid
        bias = not use_spectral_norm
        c = base_channels
        spec = [(in_channels, c, 2), (c, 2 * c, 2), (2 * c, 4 * c, 2), (4 * c, 8 * c, 1), (8 * c, 1, 1)]
        layers = []
        for i, (cin, cout, stride) in enumerate(spec):
            conv = nn.Conv2d(cin, cout, kernel_size=4, stride=stride, padding=1, bias=bias)
            init_weights(conv)
            parts = [_sn(conv, use_spectral_norm)]
            if i < 4:
                parts.append(nn.LeakyReLU(0.2, inplace=True))
            layers.append(nn.Sequential(*parts))
        self.conv1 = self.features = layers[0]
        self.conv2, self.conv3, self.conv4, self.conv5 = layers[1:]

    def forward(self, x: torch.Tensor):
        conv1 = self.conv1(x)
        conv2 = self.conv2(conv1)
        conv3 = self.conv3(conv2)
        conv4 = self.conv4(conv3)
        conv5 = self.conv5(conv4)
        out = torch.sigmoid(conv5) if self.use_sigmoid else conv5
        return out, [conv1, conv2, conv3, conv4, conv5]


def edge_generator_input(gray: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Stage-1 input: ``cat(gray*(1-m)+m, edges*(1-m), m)``; mask 1 marks the hole."""
    return torch.cat([gray * (1 - mask) + mask, edges * (1 - mask), mask], dim=1)


def inpaint_generator_input(image: torch.Tensor, edges: torch.Tensor, mask: torch.Tensor,
                            generator: nn.Module | None = None) -> torch.Tensor:
    """Stage-2 input: ``cat(img*(1-m)+m, edges)``; mask 1 marks the hole.

    Pass the ``generator`` it is for: a :class:`FillInpaintGenerator` (possibly wrapped in DDP)
    also takes the mask, as a fifth channel.
    """
    parts = [image * (1 - mask) + mask, edges]
    if isinstance(getattr(generator, "module", generator), FillInpaintGenerator):
        parts.append(mask)
    return torch.cat(parts, dim=1)


def rgb_to_gray(image: torch.Tensor) -> torch.Tensor:
    """Luma with skimage's ``rgb2gray`` weights (0.2125, 0.7154, 0.0721): (N,3,H,W) -> (N,1,H,W)."""
    w = image.new_tensor([0.2125, 0.7154, 0.0721]).view(1, 3, 1, 1)
    return (image * w).sum(dim=1, keepdim=True)
