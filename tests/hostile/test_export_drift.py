"""Non-finite drift is refused: a variant whose outputs are NaN/inf must not pass the PSNR gate
(NaN compares false with it) nor land in export.json."""

from __future__ import annotations

import math

import pytest


def test_nan_drift_of_a_variant_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    import torch

    from ec_export import variants
    from ec_export.errors import ExportError
    from ec_export.exporter import export_models
    from ec_train.networks import EdgeGenerator, InpaintGenerator

    real_drift = variants._drift

    def overflowing(job, kind, precision):  # what an FP16 graph that overflows to inf measures
        out = real_drift(job, kind, precision)
        return {**out, "psnr_db": math.nan, "max_abs_diff": math.nan} if precision == "fp16" else out

    monkeypatch.setattr(variants, "_drift", overflowing)
    torch.manual_seed(0)
    out = tmp_path / "export"
    with pytest.raises(ExportError, match="NaN"):
        export_models(EdgeGenerator(1, True, 8), InpaintGenerator(1, 8), out, precisions=("fp32", "fp16"),
                      canny={"iterations": 16}, accuracy_size=64, progress=False)
    assert list(tmp_path.iterdir()) == []  # no export folder, no staging folder
