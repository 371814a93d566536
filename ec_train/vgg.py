"""VGG19 feature extractor for the perceptual and style losses, keyed like torchvision's ``vgg19``.

torchvision's ImageNet file ``vgg19-dcbc0b5d.pth`` loads into :class:`VGG19Features` as is
(its ``features.N.weight`` / ``features.N.bias`` keys; the classifier keys are ignored). Nothing
is downloaded: the file is looked up in torch's hub cache or given by path.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ec_train.errors import ConfigError

VGG19_FILE = "vgg19-dcbc0b5d.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbc0b5d.pth"
# torchvision's configuration "E": channel counts, "M" = 2x2 max-pool.
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _relu_names() -> dict[int, str]:
    """Index in ``features`` of each ReLU -> ``reluB_C`` (block B, conv C)."""
    names, block, conv, idx = {}, 1, 1, 0
    for v in _VGG19_CFG:
        if v == "M":
            block, conv, idx = block + 1, 1, idx + 1
        else:
            names[idx + 1] = f"relu{block}_{conv}"
            conv, idx = conv + 1, idx + 2
    return names


RELU_INDEX = {name: i for i, name in _relu_names().items()}


class VGG19Features(nn.Module):
    """torchvision-compatible VGG19 ``features`` stack, run up to the deepest requested ReLU.

    ``forward(x)`` takes raw [0, 1] RGB (no ImageNet normalisation, as the official recipe) and
    returns ``{reluB_C: activation}`` for the layers in ``layers``. Parameters are frozen.
    """

    def __init__(self, layers: tuple[str, ...] = tuple(RELU_INDEX)):
        super().__init__()
        mods: list[nn.Module] = []
        cin = 3
        for v in _VGG19_CFG:
            if v == "M":
                mods.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                mods += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*mods)
        unknown = [name for name in layers if name not in RELU_INDEX]
        if unknown:
            raise ConfigError(f"unknown VGG19 layers {unknown}; known: {', '.join(RELU_INDEX)}")
        self.layers = {RELU_INDEX[name]: name for name in layers}
        self.last = max(self.layers)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.layers:
                out[self.layers[i]] = x
            if i >= self.last:
                break
        return out


def default_vgg_path() -> Path:
    """Where torchvision caches the file: ``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def resolve_vgg_weights(spec: str | os.PathLike | None) -> Path | None:
    """Turn ``--vgg-weights`` into a file path, or None for the explicit ``none`` opt-out.

    ``None`` means "use torchvision's cache". A missing file raises a :class:`ConfigError` that
    names the file and where to get it, so training stops before it starts.
    """
    if spec is not None and str(spec).lower() == "none":
        warnings.warn("--vgg-weights none: training WITHOUT the perceptual and style losses; "
                      "results will be blurrier than the EdgeConnect recipe", stacklevel=2)
        return None
    path = Path(spec).expanduser() if spec is not None else default_vgg_path()
    if not path.is_file():
        raise ConfigError(
            f"VGG19 ImageNet weights not found at {path}. The perceptual and style losses need "
            f"torchvision's {VGG19_FILE} (from {VGG19_URL}, or what torchvision.models.vgg19("
            f"weights='IMAGENET1K_V1') caches under $TORCH_HOME/hub/checkpoints/). Put it there, "
            f"pass --vgg-weights PATH, or pass --vgg-weights none to train without those losses.")
    return path


def load_vgg19(path: str | os.PathLike, layers: tuple[str, ...] = tuple(RELU_INDEX)) -> VGG19Features:
    """Build :class:`VGG19Features` and load the ``features.*`` tensors of a torchvision VGG19 file."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{path} is not a readable VGG19 weights file: {exc}") from exc
    model = VGG19Features(layers)
    feats = {k: v for k, v in sd.items() if k.startswith("features.")} if isinstance(sd, dict) else {}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(feats))
    if missing or any(feats[k].shape != expected[k].shape for k in expected):
        raise ConfigError(f"{path} is not torchvision's VGG19 ImageNet file ({VGG19_FILE}): "
                          f"missing or mis-shaped keys such as {missing[:4] or 'shape mismatch'}")
    model.load_state_dict({k: feats[k] for k in expected})
    return model.eval()
