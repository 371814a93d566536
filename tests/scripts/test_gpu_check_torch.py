"""The torch checks of ``scripts/gpu_check.sh`` (CUDA Canny, AMP training) with CUDA faked on the CPU.

``.cuda()`` returns the same CPU tensor here, so these tests prove the checks' own logic (API use,
figures, pass criteria), not CUDA numerics, which only ``bash scripts/gpu_check.sh`` on a GPU measures.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
gpu_check_cuda = importlib.import_module("gpu_check_cuda")


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.nn.Module, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(gpu_check_cuda, "QUICK_SIZES", {"canny": 64, "amp": 32})  # the CPU stands in: keep it small


def test_torch_canny_check_compares_and_reports(fake_cuda, tmp_path):
    result = gpu_check_cuda.check_torch_canny(gpu_check_cuda.Context(out=tmp_path, quick=True))
    assert result["failures"] == []
    assert result["figures"]["pixels agreeing"] == "100.0000%" and result["figures"]["edge pixels (CPU)"] > 0
    assert result["figures"]["pixels agreeing, TF32 off"] == "100.0000%"
    assert torch.backends.cudnn.allow_tf32 is True  # restored


@pytest.mark.slow
def test_amp_check_trains_and_reports(fake_cuda, monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_check_cuda, "TRAIN_DEVICE", "cpu")
    monkeypatch.setattr(gpu_check_cuda, "amp_modes", lambda torch: ["bf16"])  # fp16 autocast needs a GPU
    result = gpu_check_cuda.check_amp_train_step(gpu_check_cuda.Context(out=tmp_path, quick=True))
    assert result["failures"] == []
    assert result["figures"]["bf16 ms/step"] > 0 and "i_l1" in result["figures"]["bf16 losses"]


def test_checks_skip_without_cuda(tmp_path):
    ctx = gpu_check_cuda.Context(out=tmp_path)
    for check in (gpu_check_cuda.check_torch_canny, gpu_check_cuda.check_amp_train_step):
        with pytest.raises(gpu_check_cuda.Skip, match="has no CUDA"):
            check(ctx)


def test_torch_canny_check_runs_without_opencv_and_scikit_image(fake_cuda, monkeypatch, tmp_path):
    """A CUDA machine may have little more than torch: the check draws its own images and holes."""
    for name in ("cv2", "skimage", "ec_train.masks", "ec_train.samples"):
        monkeypatch.setitem(sys.modules, name, None)
    result = gpu_check_cuda.check_torch_canny(gpu_check_cuda.Context(out=tmp_path, quick=True))
    assert result["failures"] == [] and result["figures"]["edge pixels (CPU)"] > 0
