"""Fixtures of the hostile-input battery: a tiny training checkpoint and its FP32 export."""

from __future__ import annotations

import shutil

import pytest


def write_tiny_checkpoint(path, seed: int = 0, nan: bool = False):
    """A training checkpoint of tiny generators (1 residual block, 8 channels); ``nan`` poisons one weight."""
    import torch

    from ec_train.checkpoints import TRAIN_FORMAT, atomic_save
    from ec_train.networks import EdgeGenerator, InpaintGenerator

    torch.manual_seed(seed)
    inpaint = InpaintGenerator(1, 8).state_dict()
    if nan:
        inpaint["decoder.7.weight"][0, 0, 0, 0] = float("nan")
    atomic_save({"format": TRAIN_FORMAT, "iteration": 0, "config": {},
                 "models": {"edge_generator": EdgeGenerator(1, True, 8).state_dict(), "inpaint_generator": inpaint}},
                path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of a tiny training checkpoint (read-only use: copy it before changing it)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("hostile_ckpt") / "tiny.pth")


@pytest.fixture(scope="session")
def tiny_export_dir(tiny_checkpoint, tmp_path_factory):
    """An FP32 export of ``tiny_checkpoint`` (16 Canny rounds; read-only use)."""
    from ec_export.exporter import export_checkpoints

    out = tmp_path_factory.mktemp("hostile_export") / "export"
    export_checkpoints([tiny_checkpoint], out, canny={"iterations": 16}, accuracy_size=64, progress=False)
    return out


@pytest.fixture
def export_copy(tiny_export_dir, tmp_path):
    """A private copy of the tiny export, free to damage."""
    return shutil.copytree(tiny_export_dir, tmp_path / "export")
