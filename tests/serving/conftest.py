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


@pytest.fixture(scope="session")
def python_repo(tiny_export3, tmp_path_factory):
    """A python-backend repository of the tiny fp32 export (what a CPU-only Triton serves)."""
    from ec_export.triton import write_repository

    repo = tmp_path_factory.mktemp("python_repo") / "repo"
    write_repository(tiny_export3, repo, backend="python", max_batch=8, queue_delay_us=2000)
    return repo


@pytest.fixture(scope="session")
def server(python_repo):
    """ec-serve on free loopback ports with an admin API key, for the whole session; always stopped."""
    from tests.serving.server import Served

    served = Served(python_repo).start()
    try:
        yield served
    finally:
        code = served.stop()
        assert code == 0, f"ec-serve exited with {code}: {''.join(served.stderr)[-2000:]}"


@pytest.fixture(scope="session")
def local(tiny_export3):
    """The in-process Inpainter on the same export, for bit-exact comparisons."""
    from ec_runtime.pipeline import Inpainter

    with Inpainter.from_dir(tiny_export3, backend="onnxruntime") as painter:
        yield painter
