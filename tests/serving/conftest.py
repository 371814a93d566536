"""Fixtures of the serving tests: one tiny export (fp32, fp16, int8) shared by the whole session."""

from __future__ import annotations

import pytest

from tests.ec_runtime.conftest import make_export


@pytest.fixture(scope="session")
def tiny_export3(tmp_path_factory):
    """An export directory of the tiny architecture at fp32, fp16 and int8 (random weights, seed 0)."""
    out = tmp_path_factory.mktemp("tiny_export3")
    make_export(out, tiny=True, precisions=("fp32", "fp16", "int8"))
    return out
