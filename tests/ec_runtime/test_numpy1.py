"""The torch-free runtime on numpy 1.26 (and Python 3.10 where installed) gives the same pixels.

``scripts/check_numpy1.sh`` builds a separate venv from ``scripts/requirements-numpy1.txt`` (kept in
``.venv-numpy1`` and reused while the pins are unchanged), runs the torch-free runtime tests there
and one ``ec-inpaint``; this test compares that output with the same inpaint under numpy 2 here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from ec_runtime.cli import DEMO_MODEL_DIR
from ec_runtime.imageio import read_image, read_mask, write_image
from ec_runtime.pipeline import Inpainter
from ec_train.masks import free_form_mask
from ec_train.samples import sample_photo

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_numpy1_venv_inpaints_like_numpy2(tmp_path):
    image, mask = tmp_path / "coffee.png", tmp_path / "hole.png"
    write_image(image, sample_photo("coffee", (181, 250)))  # odd size: exercises the padding
    write_image(mask, free_form_mask(181, 250, np.random.default_rng(3), (0.1, 0.3)) * 255)
    out = tmp_path / "filled.png"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "check_numpy1.sh"), "--inpaint", str(image), str(mask),
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "numpy 1.26" in log  # the script also fails when torch is importable in that venv
    with Inpainter.from_dir(DEMO_MODEL_DIR, backend="onnxruntime") as painter:
        want = painter.inpaint(read_image(image), read_mask(mask))
    got = read_image(out)
    assert got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1, f"numpy 1 and numpy 2 runs differ by up to {diff.max()} (mean {diff.mean():.4f})"
