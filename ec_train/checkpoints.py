"""Reading and writing checkpoints: the official EdgeConnect files, bare state dicts, and ours.

Official files: ``EdgeModel_gen.pth`` / ``InpaintingModel_gen.pth`` hold
``{'iteration': int, 'generator': state_dict}``; ``*_dis.pth`` hold ``{'discriminator': ...}``.
Keys may carry a ``module.`` prefix (multi-GPU runs). Our training checkpoint is one dict with
``format == TRAIN_FORMAT`` and a ``models`` dict (see :data:`MODEL_KEYS`).

Loading never executes code from the file (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ec_train.errors import CheckpointError
from ec_train.files import default_file_mode
from ec_train.networks import Discriminator, EdgeGenerator, FillInpaintGenerator, inpaint_generator_class

TRAIN_FORMAT = "ec-deploy/train-checkpoint/v1"
MODEL_KEYS = {
    "edge": "edge_generator",
    "inpaint": "inpaint_generator",
    "edge_discriminator": "edge_discriminator",
    "inpaint_discriminator": "inpaint_discriminator",
}
OFFICIAL_FILES = {"edge": "EdgeModel_gen.pth", "inpaint": "InpaintingModel_gen.pth"}
GENERATOR_IN_CHANNELS = {3: "edge", 4: "inpaint", 5: "inpaint"}  # 5: FillInpaintGenerator
DISCRIMINATOR_IN_CHANNELS = {2: "edge_discriminator", 3: "inpaint_discriminator"}


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load`` a file safely (weights only), with errors that name the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; expected a checkpoint file (.pth)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unsupported-type errors all mean the same to a user
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``module.`` prefix that DataParallel / DDP runs saved."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _first_conv_weight(sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor | None:
    for suffix in ("weight_orig", "weight"):
        if f"{prefix}.{suffix}" in sd:
            return sd[f"{prefix}.{suffix}"]
    return None


def detect_kind(sd: dict[str, torch.Tensor]) -> str:
    """Tell which network a state dict belongs to from its first conv's input channels."""
    w = _first_conv_weight(sd, "encoder.1")
    if w is not None and w.dim() == 4 and w.shape[1] in GENERATOR_IN_CHANNELS:
        return GENERATOR_IN_CHANNELS[w.shape[1]]
    w = _first_conv_weight(sd, "conv1.0")
    if w is not None and w.dim() == 4 and w.shape[1] in DISCRIMINATOR_IN_CHANNELS:
        return DISCRIMINATOR_IN_CHANNELS[w.shape[1]]
    raise CheckpointError("state dict is not an EdgeConnect network (no encoder.1 or conv1.0 conv with 2-4 inputs)")


def generator_architecture(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Infer ``kind``, ``base_channels``, ``residual_blocks``, ``spectral_norm`` and ``coarse_fill`` from a generator state dict.

    ``coarse_fill`` marks the 5-input inpaint generator of the ``*-fill`` variants.
    """
    kind = detect_kind(sd)
    if kind not in ("edge", "inpaint"):
        raise CheckpointError(f"expected a generator state dict, got a {kind.replace('_', ' ')}")
    blocks = {int(k.split(".")[1]) for k in sd if k.startswith("middle.")}
    return {
        "kind": kind,
        "base_channels": int(_first_conv_weight(sd, "encoder.1").shape[0]),
        "residual_blocks": max(blocks) + 1 if blocks else 0,
        "spectral_norm": "encoder.1.weight_orig" in sd,
        "coarse_fill": int(_first_conv_weight(sd, "encoder.1").shape[1]) == FillInpaintGenerator.in_channels,
    }


def _find_state_dict(obj: dict[str, Any], kind: str | None, source: str) -> dict[str, torch.Tensor]:
    if obj.get("format") == TRAIN_FORMAT:
        models = obj.get("models", {})
        if kind is None:
            raise CheckpointError(f"{source} is a training checkpoint holding several networks; say which (edge or inpaint)")
        sd = models.get(MODEL_KEYS[kind])
        if sd is None:
            raise CheckpointError(f"{source} is a training checkpoint without a {kind} network "
                                  f"(it holds: {', '.join(sorted(models)) or 'nothing'})")
    elif isinstance(obj.get("generator"), dict):
        sd = obj["generator"]
    elif isinstance(obj.get("discriminator"), dict):
        sd = obj["discriminator"]
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
    else:
        raise CheckpointError(f"{source} is not an EdgeConnect checkpoint "
                              f"(top-level keys: {', '.join(map(str, list(obj)[:8]))})")
    sd = strip_module_prefix(sd)
    try:
        detect_kind(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{source} is not an EdgeConnect checkpoint: {exc}") from None
    return sd


def extract_state_dict(obj: dict[str, Any], kind: str | None, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Pull one network's state dict out of an official file, our training file, or a bare state dict.

    ``kind`` is ``edge``, ``inpaint``, ``edge_discriminator`` or ``inpaint_discriminator``, or None
    to accept whichever single network the file holds. A file of another kind raises a
    :class:`CheckpointError` that says what it holds.
    """
    sd = _find_state_dict(obj, kind, source)
    found = detect_kind(sd)
    if kind is not None and found != kind:
        raise CheckpointError(f"{source} holds the {found.replace('_', ' ')} network, not the {kind.replace('_', ' ')} one")
    return sd


def build_generator(arch: dict[str, Any]) -> nn.Module:
    """An untrained generator with the architecture :func:`generator_architecture` describes."""
    if arch["kind"] == "edge":
        return EdgeGenerator(arch["residual_blocks"], arch["spectral_norm"], arch["base_channels"])
    return inpaint_generator_class(arch.get("coarse_fill", False))(arch["residual_blocks"], arch["base_channels"])


def load_into(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """``load_state_dict`` strictly, listing missing and unexpected keys by name on failure."""
    expected, given = set(model.state_dict()), set(sd)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing[:12])}" + (" ..." if len(missing) > 12 else ""))
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected[:12])}" + (" ..." if len(unexpected) > 12 else ""))
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: {exc}") from exc
    return model


def load_generator(path: str | os.PathLike, kind: str | None = None) -> nn.Module:
    """Load a generator (eval mode) from an official file, our training checkpoint or a state dict.

    ``kind`` (``edge``/``inpaint``) is required for a training checkpoint, which holds both;
    otherwise it is detected, and when given it is checked. The architecture (base channels,
    residual blocks, spectral norm) is read off the state dict, so ``lite`` weights load too.
    """
    sd = extract_state_dict(read_checkpoint(path), kind, source=str(path))
    model = build_generator(generator_architecture(sd))
    return load_into(model, sd, source=str(path)).eval()


def load_discriminator(path: str | os.PathLike, kind: str = "edge_discriminator") -> Discriminator:
    """Load a discriminator from an official ``*_dis.pth``, our training checkpoint or a state dict."""
    obj = read_checkpoint(path)
    sd = extract_state_dict(obj, kind, source=str(path))
    in_channels = 2 if kind == "edge_discriminator" else 3
    model = Discriminator(in_channels, use_spectral_norm="conv1.0.weight_orig" in sd,
                          base_channels=int(_first_conv_weight(sd, "conv1.0").shape[0]))
    return load_into(model, sd, source=str(path)).eval()


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file in the same directory, fsync, then rename over ``path``.

    A crash during the write leaves any previous file at ``path`` intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())  # mkstemp creates 0600; checkpoints get the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_official(edge: nn.Module | None, inpaint: nn.Module | None, out_dir: str | os.PathLike,
                  iteration: int = 0) -> list[Path]:
    """Write ``EdgeModel_gen.pth`` / ``InpaintingModel_gen.pth`` in the official format."""
    written = []
    for kind, model in (("edge", edge), ("inpaint", inpaint)):
        if model is not None:
            model = getattr(model, "module", model)  # unwrap DDP
            sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            written.append(atomic_save({"iteration": int(iteration), "generator": sd},
                                       Path(out_dir) / OFFICIAL_FILES[kind]))
    return written
