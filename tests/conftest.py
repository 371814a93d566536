"""Shared fixtures and the skip rules for the ``gpu`` and ``trt`` markers."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return True
    return shutil.which("nvidia-smi") is not None and importlib.util.find_spec("pycuda") is not None


HAS_GPU = _cuda_available()
HAS_TRT = any(importlib.util.find_spec(m) is not None for m in ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings"))

requires_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")
requires_trt = pytest.mark.skipif(not HAS_TRT, reason="needs tensorrt or tensorrt_rtx_bindings (pip install -r requirements-dev.txt)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "gpu" in item.keywords and not HAS_GPU:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "trt" in item.keywords and not HAS_TRT:
            item.add_marker(pytest.mark.skip(reason="needs tensorrt or tensorrt_rtx_bindings"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
