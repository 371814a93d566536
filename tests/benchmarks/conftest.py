"""A tiny exported model (1 residual block, 8 channels) with its training checkpoint."""

import pytest
import torch

from ec_train.checkpoints import TRAIN_FORMAT, atomic_save
from ec_train.networks import EdgeGenerator, InpaintGenerator


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    from ec_export.exporter import export_checkpoints

    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    ckpt = {"format": TRAIN_FORMAT, "iteration": 0, "config": {},
            "models": {"edge_generator": EdgeGenerator(1, True, 8).state_dict(),
                       "inpaint_generator": InpaintGenerator(1, 8).state_dict()}}
    atomic_save(ckpt, root / "tiny.pth")
    export_checkpoints([root / "tiny.pth"], root / "export", precisions=("fp32", "int8"), calib_size=64,
                       accuracy_size=64, progress=False)
    return root / "export"


