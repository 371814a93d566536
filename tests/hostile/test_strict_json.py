"""Every JSON report is strict: NaN and infinity become null, never bare ``NaN``/``Infinity``."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.report import write_json
from ec_train.files import default_file_mode, strict_json, write_atomic
from tests.hostile.battery import mode


def _strict_load(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("value", (math.nan, math.inf, -math.inf))
def test_bench_report_with_non_finite_values_is_strict_json(value, tmp_path):
    """An infinite PSNR (identical outputs) or a NaN measurement is written as null."""
    import numpy as np

    result = {"rows": [{"psnr_db": value, "latency": {"mean_ms": np.float64(value)}, "x": [1.5, value]}]}
    path = write_json(result, tmp_path / "r.json")
    loaded = _strict_load(path.read_text())
    assert loaded["rows"][0] == {"psnr_db": None, "latency": {"mean_ms": None}, "x": [1.5, None]}


def test_strict_json_refuses_nothing_finite():
    assert json.loads(strict_json({"a": 1.25, "b": [0, -3.5e-9], "c": "NaN"})) == {"a": 1.25, "b": [0, -3.5e-9], "c": "NaN"}


def test_write_atomic_gives_the_usual_file_mode(tmp_path):
    path = write_atomic(tmp_path / "x" / "out.json", "{}")
    assert mode(path) == default_file_mode()
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]
