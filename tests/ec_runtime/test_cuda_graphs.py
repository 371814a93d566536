"""ec_runtime.cuda_graphs on the test double: a failed capture never leaves the stream capturing."""

from __future__ import annotations

import pytest

from ec_runtime import cuda_graphs
from ec_runtime.errors import EcRuntimeError, MissingDependencyError
from tests.ec_runtime.gpu_double import ContractError
from tests.ec_runtime.trt_double import install


@pytest.fixture
def stream(monkeypatch):
    gpu, _ = install(monkeypatch)
    import pycuda.driver as cuda

    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    yield gpu, cuda.Stream()
    cuda.Context.pop()


def test_capture_replays_what_was_enqueued(stream):
    gpu, s = stream
    api = cuda_graphs.graph_api()
    assert api.name == "cuda-python"
    ran = []
    exe = cuda_graphs.capture(api, s.handle, lambda: s.enqueue(lambda: ran.append(1)))
    s.synchronize()
    assert ran == []  # captured work does not run
    api.launch(exe, s.handle)
    api.launch(exe, s.handle)
    s.synchronize()
    assert ran == [1, 1] and gpu.counts["replay"] == 2
    api.destroy(exe)


@pytest.mark.parametrize("work, error", [(lambda: (_ for _ in ()).throw(ContractError("boom")), ContractError),
                                         (lambda: False, EcRuntimeError)])
def test_a_failed_capture_ends_the_capture(stream, work, error):
    _, s = stream
    with pytest.raises(error):
        cuda_graphs.capture(cuda_graphs.graph_api(), s.handle, work)
    assert s.capturing is None
    s.synchronize()  # would raise if the stream were still capturing


def test_no_runtime_api_names_what_to_install(monkeypatch):
    install(monkeypatch, graphs=False)
    monkeypatch.setattr(cuda_graphs, "_libcudart", lambda: None)
    with pytest.raises(MissingDependencyError, match="cuda-python"):
        cuda_graphs.graph_api()
