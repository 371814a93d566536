"""The test double enforces the contracts it claims (each rule is shown to bite)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ec_runtime.gpu_double import ContractError
from tests.ec_runtime.trt_double import install, read_plan


@pytest.fixture
def double(monkeypatch):
    gpu, trt = install(monkeypatch)
    import pycuda.driver as cuda
    from cuda.bindings import runtime as cudart

    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    yield gpu, trt, cuda, cudart
    cuda.Context.pop()


@pytest.fixture
def canny_plan(double, lite_export, tmp_path):
    from ec_export.engine import build_engine

    _, trt, _, _ = double
    return build_engine(lite_export / "canny.onnx", tmp_path / "canny.engine", trt_module=trt,
                        shapes=((1, 16, 16), (1, 32, 32), (2, 64, 64)))


def _engine(double, plan):
    _, trt, _, _ = double
    return trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan.read_bytes())


def test_freed_addresses_are_handed_out_again_and_copies_are_bounded(double):
    gpu, _, cuda, _ = double
    a = cuda.mem_alloc(1024)
    first = int(a)
    a.free()
    b = cuda.mem_alloc(512)
    assert int(b) == first and gpu.counts["reused"] == 1
    del b  # garbage collection frees too
    assert int(cuda.mem_alloc(1024)) == first
    stream = cuda.Stream()
    host = cuda.pagelocked_empty(2048, np.uint8)
    c = cuda.mem_alloc(1024)
    with pytest.raises(ContractError, match="run past the allocation"):
        cuda.memcpy_htod_async(c, host, stream)
    with pytest.raises(ContractError, match="pageable"):
        cuda.memcpy_htod_async(c, np.zeros(16, np.uint8), stream)


def test_async_copies_run_at_synchronize(double):
    _, _, cuda, _ = double
    stream, dev = cuda.Stream(), cuda.mem_alloc(16)
    src, dst = cuda.pagelocked_empty(16, np.uint8), cuda.pagelocked_empty(16, np.uint8)
    src[:], dst[:] = 7, 0
    cuda.memcpy_htod_async(dev, src, stream)
    cuda.memcpy_dtoh_async(dst, dev, stream)
    assert not dst.any()  # nothing has run yet
    stream.synchronize()
    assert (dst == 7).all()


def test_profile_bounds_and_unknown_output_shapes(double, canny_plan):
    engine = _engine(double, canny_plan)
    ctx = engine.create_execution_context()
    assert not ctx.set_input_shape("gray", (1, 1, 8, 8))  # below min
    assert not ctx.set_input_shape("gray", (4, 1, 32, 32))  # N above max
    assert ctx.set_input_shape("gray", (2, 1, 32, 64))
    assert tuple(ctx.get_tensor_shape("edges")) == (-1, 1, -1, -1)  # mask not set yet
    assert ctx.set_input_shape("mask", (2, 1, 32, 64))
    assert tuple(ctx.get_tensor_shape("edges")) == (2, 1, 32, 64)


def test_user_managed_contexts_need_their_memory(double, canny_plan):
    _, trt, cuda, _ = double
    engine = _engine(double, canny_plan)
    ctx = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
    stream = cuda.Stream()
    bufs = {n: cuda.mem_alloc(32 * 32 * 4) for n in ("gray", "mask", "edges")}
    for n, b in bufs.items():
        ctx.set_tensor_address(n, int(b))
        if n != "edges":
            ctx.set_input_shape(n, (1, 1, 32, 32))
    with pytest.raises(ContractError, match="before set_device_memory"):
        ctx.execute_async_v3(stream.handle)
    with pytest.raises(ContractError, match="need"):
        ctx.set_device_memory(int(cuda.mem_alloc(1024)), 1024)
    scratch = cuda.mem_alloc(engine.device_memory_size_v2)
    ctx.set_device_memory(int(scratch), engine.device_memory_size_v2)
    assert ctx.execute_async_v3(stream.handle)
    stream.synchronize()


def test_execute_needs_every_address_and_big_enough_buffers(double, canny_plan):
    _, _, cuda, _ = double
    ctx = _engine(double, canny_plan).create_execution_context()
    stream = cuda.Stream()
    for name in ("gray", "mask"):
        ctx.set_input_shape(name, (1, 1, 32, 32))
    bufs = {n: cuda.mem_alloc(32 * 32 * 4) for n in ("gray", "mask")}
    for n, b in bufs.items():
        ctx.set_tensor_address(n, int(b))
    with pytest.raises(ContractError, match="no address set for tensor 'edges'"):
        ctx.execute_async_v3(stream.handle)
    small = cuda.mem_alloc(16 * 16 * 4)
    ctx.set_tensor_address("edges", int(small))
    with pytest.raises(ContractError, match="run past the allocation"):
        ctx.execute_async_v3(stream.handle)
    out = cuda.mem_alloc(32 * 32 * 4)
    ctx.set_tensor_address("edges", int(out))
    assert ctx.execute_async_v3(stream.handle)
    stream.synchronize()


def test_graph_rules(double, canny_plan):
    gpu, _, cuda, cudart = double
    ctx = _engine(double, canny_plan).create_execution_context()
    stream = cuda.Stream()
    bufs = {n: cuda.mem_alloc(64 * 64 * 4) for n in ("gray", "mask", "edges")}
    for n, b in bufs.items():
        ctx.set_tensor_address(n, int(b))
    for name in ("gray", "mask"):
        ctx.set_input_shape(name, (1, 1, 32, 32))
    mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    cudart.cudaStreamBeginCapture(stream.handle, mode)
    with pytest.raises(ContractError, match="right after a shape change"):
        ctx.execute_async_v3(stream.handle)  # no eager launch since the shape was set
    err, _ = cudart.cudaStreamEndCapture(stream.handle)
    assert err == cudart.cudaError_t.cudaErrorStreamCaptureInvalidated
    ctx.execute_async_v3(stream.handle)  # eager
    cudart.cudaStreamBeginCapture(stream.handle, mode)
    ctx.execute_async_v3(stream.handle)
    with pytest.raises(ContractError, match="capturing"):
        stream.synchronize()
    err, graph = cudart.cudaStreamEndCapture(stream.handle)
    err, exe = cudart.cudaGraphInstantiateWithFlags(graph, 0)
    assert cudart.cudaGraphLaunch(exe, stream.handle)[0] == 0
    stream.synchronize()
    assert gpu.counts["execute"] == 2 and gpu.counts["replay"] == 1  # the captured launch ran only on replay
    for name in ("gray", "mask"):  # reshape to B and back to A: the graph of A is stale
        ctx.set_input_shape(name, (1, 1, 64, 64))
        ctx.set_input_shape(name, (1, 1, 32, 32))
    with pytest.raises(ContractError, match="replayed after its execution context was reshaped"):
        cudart.cudaGraphLaunch(exe, stream.handle)


def test_version_compatible_plans_need_host_code_allowed(double, lite_export, tmp_path):
    from ec_export.engine import build_engine

    _, trt, _, _ = double
    plan = build_engine(lite_export / "canny.onnx", tmp_path / "vc.engine", trt_module=trt, version_compatible=True,
                        shapes=((1, 16, 16), (1, 32, 32), (1, 64, 64)))
    assert "VERSION_COMPATIBLE" in read_plan(plan.read_bytes())[0]["flags"]
    runtime = trt.Runtime(trt.Logger())
    assert runtime.deserialize_cuda_engine(plan.read_bytes()) is None
    runtime.engine_host_code_allowed = True
    assert runtime.deserialize_cuda_engine(plan.read_bytes()) is not None


@pytest.mark.trt
def test_the_double_offers_only_names_the_real_tensorrt_api_has():
    """Every public name of the double's TensorRT classes exists on TensorRT-RTX's (the API TensorRT 10 shares)."""
    import tensorrt_rtx_bindings as real

    from tests.ec_runtime import trt_double as d

    pairs = [(d.Runtime, real.Runtime), (d.Engine, real.ICudaEngine), (d.ExecutionContext, real.IExecutionContext),
             (d.Builder, real.Builder), (d.BuilderConfig, real.IBuilderConfig), (d.Network, real.INetworkDefinition),
             (d.OptimizationProfile, real.IOptimizationProfile), (d.OnnxParser, real.OnnxParser)]
    for fake, actual in pairs:
        names = {n for n in vars(fake) if not n.startswith("_")} - {"gpu"}
        assert names <= set(dir(actual)), (fake.__name__, sorted(names - set(dir(actual))))
    assert hasattr(real.Runtime, "engine_host_code_allowed")
    for enum in ("DataType", "TensorIOMode", "BuilderFlag", "MemoryPoolType", "NetworkDefinitionCreationFlag",
                 "ExecutionContextAllocationStrategy"):
        names = {m.name for m in getattr(d, enum)}
        assert names <= set(dir(getattr(real, enum))), (enum, names - set(dir(getattr(real, enum))))
    assert callable(real.nptype) and hasattr(real.Logger, "WARNING") and hasattr(real.ILogger, "Severity")
