import json

import numpy as np
import pytest
from click.testing import CliRunner
from skimage.metrics import structural_similarity

from benchmarks.cli import eval_main
from benchmarks.quality import HOLE_BINS, eval_cases, l1, psnr, ssim
from ec_train.samples import sample_photo


def test_ssim_matches_the_gaussian_window_reference():
    a = sample_photo("coffee", 96)
    b = np.clip(a.astype(int) + np.random.default_rng(0).integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=255, channel_axis=2)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-4)
    assert ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, a) == float("inf") and l1(a, a) == 0
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b) ** 2)))


def test_eval_cases_cover_each_hole_bin():
    cases = eval_cases({"coffee": sample_photo("coffee", 64)}, masks_per_bin=2, seed=1)
    assert len(cases) == 2 * len(HOLE_BINS)
    for case in cases:
        lo, hi = case.bin
        assert lo - 1e-9 <= case.mask.mean() <= hi + 1e-9


def test_ec_eval_writes_the_table(tiny_export, tmp_path):
    out = tmp_path / "q"
    result = CliRunner().invoke(eval_main, [str(tiny_export), "--size", "64", "--masks-per-bin", "1",
                                            "--precisions", "fp32,int8", "--threads", "1", "-q",
                                            "--json", str(out / "q.json"), "--markdown", str(out / "q.md")])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "q.json").read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert methods == {"ours fp32", "ours int8", "cv2 TELEA", "cv2 NS"}
    assert {r["holes"] for r in rows} == {"10-20%", "20-30%", "30-40%", "40-50%"}
    for r in rows:
        assert np.isfinite(r["psnr_db"]) and 0 < r["ssim"] <= 1 and 0 <= r["l1"] < 1 and r["n"] == 4
    assert "cv2 TELEA PSNR / SSIM / L1" in (out / "q.md").read_text()
    missing = CliRunner().invoke(eval_main, [str(tiny_export), "--precisions", "fp16", "-q"])
    assert missing.exit_code != 0 and "ec-export CHECKPOINT -o" in missing.output and "--fp16" in missing.output
