"""A test double of the TensorRT Python API, ``pycuda.driver`` and cuda-python's graph calls.

Test code, not product. It lets the TensorRT path of ``ec_runtime`` run on a machine without a
GPU while enforcing the documented contracts of the APIs it stands in for:

* **Device memory** (``pycuda.driver``): ``mem_alloc`` hands out addresses from a fake heap and
  hands freed addresses out again (as the CUDA allocator does); an allocation is freed when its
  ``DeviceAllocation`` is freed or garbage-collected. A copy that runs past an allocation raises.
  Async copies need page-locked host memory (``pagelocked_empty``) and run only when the stream
  is synchronised, so a result read before ``synchronize`` is stale.
* **TensorRT** (``Runtime``, ``ICudaEngine``, ``IExecutionContext``): an "engine" is a plan written
  by this double's builder; it holds the source ONNX, which runs in ONNX Runtime on the fake
  memory at the bound addresses. ``set_input_shape`` returns False outside the profile; output
  shapes stay unknown (-1) until every input shape is set; ``execute_async_v3`` fails when an
  address is unset or a buffer is too small. Version-compatible plans deserialize only when
  ``runtime.engine_host_code_allowed`` is True.
* **CUDA graphs** (``cuda.bindings.runtime``): capture records the work enqueued on a stream;
  replay runs it with the shapes and addresses baked in at capture. Capturing right after a
  shape change (no eager ``execute_async_v3``) fails, and replaying a graph whose context was
  reshaped since the capture raises :class:`ContractError`. Synchronising a capturing stream
  is an error.

:func:`install` puts the three fake modules into ``sys.modules`` (use it with ``monkeypatch``).
"""

from __future__ import annotations

import enum
import importlib.machinery
import io
import json
import types
from dataclasses import dataclass, field

import numpy as np

PLAN_MAGIC = b"EC-TEST-DOUBLE-PLAN\n"
HEAP_BASE = 0x7F0000000000


class ContractError(RuntimeError):
    """A call the real API would refuse or that has undefined behaviour on a GPU."""


# ----------------------------------------------------------------------------------------------------
# the fake GPU: heap, streams, graphs
# ----------------------------------------------------------------------------------------------------

class Gpu:
    """Fake device state shared by the three modules; counters let tests see what happened."""

    def __init__(self, name: str = "NVIDIA Test Double", cc: tuple[int, int] = (8, 7)) -> None:
        self.name, self.cc = name, cc
        self.blocks: dict[int, bytearray] = {}  # live allocations: address -> bytes
        self.freed: list[tuple[int, int]] = []  # (address, capacity) ready to be handed out again
        self.capacity: dict[int, int] = {}
        self.next_address = HEAP_BASE
        self.pinned: list[np.ndarray] = []
        self.streams: dict[int, "Stream"] = {}
        self.counts = {"alloc": 0, "reused": 0, "execute": 0, "capture": 0, "replay": 0, "htod": 0, "dtoh": 0}

    # heap ------------------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        if nbytes <= 0:
            raise ContractError(f"mem_alloc({nbytes})")
        self.counts["alloc"] += 1
        for i, (addr, cap) in enumerate(sorted(self.freed)):
            if cap >= nbytes:
                self.freed.remove((addr, cap))
                self.counts["reused"] += 1
                self.blocks[addr] = bytearray(nbytes)
                return addr
        addr = self.next_address
        self.next_address += (nbytes + 0xFFFF) // 0x10000 * 0x10000
        self.capacity[addr] = self.next_address - addr
        self.blocks[addr] = bytearray(nbytes)
        return addr

    def free(self, addr: int) -> None:
        if addr not in self.blocks:
            raise ContractError(f"free of 0x{addr:x}, which is not allocated")
        del self.blocks[addr]
        self.freed.append((addr, self.capacity[addr]))

    def span(self, addr: int, nbytes: int, what: str) -> tuple[bytearray, int]:
        """The block holding ``[addr, addr + nbytes)`` and the offset in it, or ContractError."""
        for base, block in self.blocks.items():
            if base <= addr < base + len(block):
                if addr + nbytes > base + len(block):
                    raise ContractError(f"{what}: {nbytes} bytes at 0x{addr:x} run past the allocation of "
                                        f"{len(block)} bytes at 0x{base:x}")
                return block, addr - base
        raise ContractError(f"{what}: 0x{addr:x} is not allocated device memory")

    def read(self, addr: int, shape, dtype) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        block, off = self.span(addr, n, "device read")
        return np.frombuffer(bytes(block[off:off + n]), dtype).reshape(shape)

    def write(self, addr: int, arr: np.ndarray) -> None:
        data = np.ascontiguousarray(arr).tobytes()
        block, off = self.span(addr, len(data), "device write")
        block[off:off + len(data)] = data

    def is_pinned(self, arr: np.ndarray) -> bool:
        lo = arr.__array_interface__["data"][0]
        hi = lo + arr.nbytes
        for p in self.pinned:
            base = p.__array_interface__["data"][0]
            if base <= lo and hi <= base + p.nbytes:
                return True
        return False

    def stream(self, handle) -> "Stream":
        handle = int(handle)
        if handle not in self.streams:
            raise ContractError(f"unknown stream handle {handle}")
        return self.streams[handle]


class Stream:
    """Work runs in order, when the stream is synchronised (or when a graph is captured, never)."""

    def __init__(self, gpu: Gpu, flags: int = 0) -> None:
        self.gpu = gpu
        self.handle = 0x1000 + len(gpu.streams) * 0x10
        gpu.streams[self.handle] = self
        self.queue: list = []
        self.capturing: list | None = None

    def enqueue(self, op) -> None:
        (self.capturing if self.capturing is not None else self.queue).append(op)

    def synchronize(self) -> None:
        if self.capturing is not None:
            raise ContractError("cudaStreamSynchronize on a stream that is capturing a graph "
                                "(cudaErrorStreamCaptureUnsupported)")
        while self.queue:
            self.queue.pop(0)()

    def is_done(self) -> bool:
        return not self.queue


# ----------------------------------------------------------------------------------------------------
# pycuda.driver
# ----------------------------------------------------------------------------------------------------

class DeviceAllocation:
    def __init__(self, gpu: Gpu, nbytes: int) -> None:
        self.gpu, self.ptr = gpu, gpu.alloc(nbytes)

    def __int__(self) -> int:
        return self.ptr

    __index__ = __int__

    def free(self) -> None:
        if self.ptr is not None:
            self.gpu.free(self.ptr)
            self.ptr = None

    def __del__(self) -> None:
        if getattr(self, "ptr", None) is not None and self.ptr in self.gpu.blocks:
            self.free()


def _device_address(obj) -> int:
    if isinstance(obj, DeviceAllocation) and obj.ptr is None:
        raise ContractError("copy to or from a freed DeviceAllocation")
    return int(obj)


def make_pycuda(gpu: Gpu) -> types.ModuleType:
    """A ``pycuda.driver`` module over ``gpu``."""
    mod = types.ModuleType("pycuda.driver")

    class Context:
        stack: list = []

        def push(self) -> None:
            Context.stack.append(self)

        @staticmethod
        def pop() -> None:
            if not Context.stack:
                raise ContractError("Context.pop() with no current context")
            Context.stack.pop()

    class Device:
        def __init__(self, index: int) -> None:
            if index != 0:
                raise ContractError(f"invalid device ordinal {index}")

        @staticmethod
        def count() -> int:
            return 1

        def name(self) -> str:
            return gpu.name

        def compute_capability(self) -> tuple[int, int]:
            return gpu.cc

        def retain_primary_context(self) -> Context:
            return Context()

    def _need_context(what: str) -> None:
        if not Context.stack:
            raise ContractError(f"{what} without a current CUDA context (push one first)")

    def mem_alloc(nbytes: int) -> DeviceAllocation:
        _need_context("mem_alloc")
        return DeviceAllocation(gpu, int(nbytes))

    def pagelocked_empty(shape, dtype) -> np.ndarray:
        arr = np.empty(shape, dtype)
        gpu.pinned.append(arr)
        return arr

    def memcpy_htod_async(dest, src: np.ndarray, stream=None) -> None:
        if not gpu.is_pinned(src):
            raise ContractError("memcpy_htod_async from pageable host memory (use pagelocked_empty)")
        if not src.flags.c_contiguous:
            raise ContractError("memcpy_htod_async from a non-contiguous array")
        addr = _device_address(dest)
        gpu.span(addr, src.nbytes, "memcpy_htod_async")

        def op():
            gpu.counts["htod"] += 1
            gpu.write(addr, src)  # reads the host buffer when the copy runs, not when it was queued
        stream.enqueue(op)

    def memcpy_dtoh_async(dest: np.ndarray, src, stream=None) -> None:
        if not gpu.is_pinned(dest):
            raise ContractError("memcpy_dtoh_async into pageable host memory (use pagelocked_empty)")
        addr = _device_address(src)
        gpu.span(addr, dest.nbytes, "memcpy_dtoh_async")

        def op():
            gpu.counts["dtoh"] += 1
            dest[...] = gpu.read(addr, dest.shape, dest.dtype)
        stream.enqueue(op)

    class _Stream(Stream):
        def __init__(self, flags: int = 0) -> None:
            _need_context("Stream()")
            super().__init__(gpu, flags)

    class Event:
        """Records when the stream reaches it; elapsed times are 0 (the double proves no speed)."""

        def __init__(self, flags: int = 0) -> None:
            self.done = False

        def record(self, stream=None):
            stream.enqueue(lambda: setattr(self, "done", True))
            return self

        def synchronize(self):
            return self

        def time_since(self, start: "Event") -> float:
            if not (self.done and start.done):
                raise ContractError("Event.time_since on an event the stream has not reached (cudaErrorNotReady)")
            return 0.0

    mod.init = lambda flags=0: None
    mod.Device, mod.Context, mod.Stream, mod.Event = Device, Context, _Stream, Event
    mod.DeviceAllocation = DeviceAllocation
    mod.mem_alloc, mod.pagelocked_empty = mem_alloc, pagelocked_empty
    mod.memcpy_htod_async, mod.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    return mod


# ----------------------------------------------------------------------------------------------------
# cuda.bindings.runtime (graph calls only), cuda-python calling convention
# ----------------------------------------------------------------------------------------------------

class cudaError_t(enum.IntEnum):  # noqa: N801 - the name cuda-python uses
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorIllegalState = 401


class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


@dataclass
class Graph:
    ops: list = field(default_factory=list)
    invalid: bool = False


def make_cudart(gpu: Gpu) -> types.ModuleType:
    mod = types.ModuleType("cuda.bindings.runtime")
    ok = cudaError_t.cudaSuccess

    def cudaStreamBeginCapture(stream, mode):
        s = gpu.stream(stream)
        if s.capturing is not None:
            return (cudaError_t.cudaErrorIllegalState,)
        cudaStreamCaptureMode(int(mode))
        s.capturing = []
        s.capture_invalid = False
        return (ok,)

    def cudaStreamEndCapture(stream):
        s = gpu.stream(stream)
        if s.capturing is None:
            return cudaError_t.cudaErrorIllegalState, None
        graph, s.capturing = Graph(s.capturing, getattr(s, "capture_invalid", False)), None
        if graph.invalid:
            return cudaError_t.cudaErrorStreamCaptureInvalidated, None
        return ok, graph

    def cudaGraphInstantiateWithFlags(graph, flags):
        if not isinstance(graph, Graph):
            return cudaError_t.cudaErrorInvalidValue, None
        gpu.counts["capture"] += 1
        return ok, Graph(list(graph.ops))

    def cudaGraphLaunch(executable, stream):
        if not isinstance(executable, Graph):
            return (cudaError_t.cudaErrorInvalidValue,)
        s = gpu.stream(stream)
        for op in executable.ops:
            check = getattr(op, "check_replay", None)
            if check:
                check()
        gpu.counts["replay"] += 1
        for op in executable.ops:
            s.enqueue(op)
        return (ok,)

    mod.cudaError_t, mod.cudaStreamCaptureMode = cudaError_t, cudaStreamCaptureMode
    mod.cudaStreamBeginCapture, mod.cudaStreamEndCapture = cudaStreamBeginCapture, cudaStreamEndCapture
    mod.cudaGraphInstantiateWithFlags, mod.cudaGraphLaunch = cudaGraphInstantiateWithFlags, cudaGraphLaunch
    mod.cudaGraphDestroy = lambda graph: (ok,)
    mod.cudaGraphExecDestroy = lambda executable: (ok,)
    return mod
