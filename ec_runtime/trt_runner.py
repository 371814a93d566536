"""TensorRT engines behind the :class:`~ec_runtime.runners.Runner` interface (TensorRT 10.x/11.x, pycuda).

Only the name-based I/O API is used (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_dtype``, ``set_input_shape``, ``get_tensor_shape``, ``set_tensor_address``,
``execute_async_v3``): it exists in 10.x and 11.x, while the binding-index API is gone.

* Device buffers are reused across calls and grown when a larger shape arrives; host staging
  buffers are page-locked (``cuda.pagelocked_empty``) so copies run asynchronously.
* One CUDA stream per :class:`CudaDevice`; runners sharing a device share the stream, so
  :class:`TrtChain` runs canny -> edge -> inpaint with intermediates left on the GPU.
* Optional CUDA-graph capture per input shape through the CUDA runtime's stream capture
  (:mod:`ec_runtime.cuda_graphs`; released pycuda has none), one execution context per shape,
  after one eager launch as TensorRT requires; a failed capture disables graphs for that runner.
* Input shapes are checked against the profile in the sidecar before any GPU work.
* :class:`~ec_runtime.tensorrt_support.EngineSidecar` is checked before deserializing, so an
  engine built for another TensorRT version or GPU is refused with a clear message.

tensorrt and pycuda are imported in :meth:`TrtRunner.activate`, never at module import.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ec_runtime.cuda_graphs import capture, graph_api
from ec_runtime.errors import EcRuntimeError, MissingDependencyError, ModelNotFoundError
from ec_runtime.runners import Runner
from ec_runtime.tensorrt_support import EngineSidecar, current_gpu, import_tensorrt


def _import_pycuda():
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise MissingDependencyError("pycuda is not installed; TensorRT engines need it: "
                                     "`pip install ec-deploy[trt]`") from exc
    return cuda


def check_engine(engine_path: str | os.PathLike, device: int = 0, with_sidecar: bool = False):
    """Refuse an engine that is missing or was built for another TensorRT or GPU; returns the trt module
    (and the :class:`EngineSidecar` with ``with_sidecar``).

    Reads the sidecar, imports the TensorRT module it names and checks version, compute
    capability and the engine's sha256 (:meth:`EngineSidecar.check`). Needs no pycuda.
    """
    path = Path(engine_path)
    if not path.is_file():
        raise ModelNotFoundError(f"TensorRT engine not found: {path} (build one with `ec-export engine`)")
    sidecar = EngineSidecar.read(path)
    trt = import_tensorrt(prefer=sidecar.tensorrt_module)
    sidecar.check(trt, current_gpu(device), path)
    return (trt, sidecar) if with_sidecar else trt


class CudaDevice:
    """A GPU's primary context, one stream and a lock serialising work submitted through it."""

    def __init__(self, device: int = 0) -> None:
        cuda = _import_pycuda()
        cuda.init()
        if cuda.Device.count() <= device:
            raise EcRuntimeError(f"CUDA device {device} does not exist ({cuda.Device.count()} found)")
        self.cuda = cuda
        self.index = device
        self.context = cuda.Device(device).retain_primary_context()
        self.lock = threading.RLock()
        with self:
            self.stream = cuda.Stream()

    def __enter__(self) -> "CudaDevice":
        self.lock.acquire()
        self.context.push()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.cuda.Context.pop()
        finally:
            self.lock.release()


@dataclass
class DeviceArray:
    """A view of GPU memory: pointer, shape and dtype (the memory belongs to a runner's buffer)."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


class _GrowingBuffer:
    """A device allocation plus a page-locked host mirror, reallocated only when a call needs more."""

    def __init__(self, cuda) -> None:
        self.cuda = cuda
        self.device = None
        self.host = None
        self.capacity = 0

    def ensure(self, nbytes: int) -> bool:
        """Make room for ``nbytes``; True if the device pointer changed."""
        if nbytes <= self.capacity:
            return False
        self.device = self.cuda.mem_alloc(max(nbytes, 256))
        self.host = self.cuda.pagelocked_empty(max(nbytes, 256), np.uint8)
        self.capacity = nbytes
        return True

    def free(self) -> None:
        if self.device is not None:
            self.device.free()
        self.device, self.host, self.capacity = None, None, 0

    def host_view(self, shape, dtype) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.host[:n].view(dtype).reshape(shape)


class _Context:
    """One execution context with the shapes and addresses last set on it, and its CUDA graph."""

    def __init__(self, context) -> None:
        self.context = context
        self.shapes: dict[str, tuple] = {}
        self.bound: dict[str, int] = {}
        self.graph = None  # instantiated graph, valid for ``shapes`` and ``bound``


class TrtRunner(Runner):
    """A deserialized TensorRT engine with reusable buffers on one CUDA device.

    ``engine_path`` needs its sidecar ``<engine>.json``. ``device`` is a GPU index or a shared
    :class:`CudaDevice`. ``cuda_graph`` captures one CUDA graph per input shape through the CUDA
    runtime (:mod:`ec_runtime.cuda_graphs`): each shape gets its own execution context, which is
    never reshaped, so a graph is replayed only with the shapes and addresses it was captured
    with. The first call of a shape runs eagerly (TensorRT needs that after a shape change), the
    capture follows, and later calls replay. At most ``graph_shapes`` shapes keep a context and
    graph (least recently used first out). The contexts never run concurrently, so they share one
    block of activation memory (user-managed allocation, TensorRT 10.1 and later).
    """

    name = "TrtRunner"

    def __init__(self, engine_path: str | os.PathLike, device: int | CudaDevice = 0,
                 cuda_graph: bool = False, graph_shapes: int = 4) -> None:
        super().__init__()
        self.path = Path(engine_path)
        self._device_arg = device
        self.cuda_graph = cuda_graph
        self.graph_shapes = max(1, int(graph_shapes))
        self.device: CudaDevice | None = None
        self.sidecar: EngineSidecar | None = None
        self.captures = self.replays = 0  # CUDA graphs captured and replayed since construction
        self._reset()

    def _reset(self) -> None:
        self._inputs, self._outputs = [], []
        self._dtypes: dict[str, np.dtype] = {}
        self._buffers: dict[str, _GrowingBuffer] = {}
        self._contexts: OrderedDict[tuple, _Context] = OrderedDict()
        self._graphs_api = None
        self._scratch = None  # (allocation, size) shared by graph mode's contexts
        self.engine = None
        self._runtime = None

    def _activate(self) -> None:
        index = self._device_arg.index if isinstance(self._device_arg, CudaDevice) else int(self._device_arg)
        trt, self.sidecar = check_engine(self.path, index, with_sidecar=True)
        self._reset()
        self.device = self._device_arg if isinstance(self._device_arg, CudaDevice) else CudaDevice(index)
        self.trt = trt
        with self.device:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            if self.sidecar.version_compatible:  # such plans carry TensorRT's lean runtime (host code)
                self._runtime.engine_host_code_allowed = True
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise EcRuntimeError(f"TensorRT could not deserialize {self.path}; rebuild it with `ec-export engine`")
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            self._dtypes[name] = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self._inputs if is_input else self._outputs).append(name)
            self._buffers[name] = _GrowingBuffer(self.device.cuda)
        if self.cuda_graph:
            try:
                self._graphs_api = graph_api()
            except MissingDependencyError as exc:
                warnings.warn(f"CUDA graphs off for {self.path.name}: {exc}", RuntimeWarning, stacklevel=3)
                self.cuda_graph = False

    # --- shapes ---------------------------------------------------------------------------------
    def check_shapes(self, shapes: Mapping[str, tuple]) -> None:
        """Raise :class:`EcRuntimeError` unless every input shape lies in the engine's profile.

        Uses the sidecar only, so it runs before any GPU work.
        """
        sidecar = self.sidecar or EngineSidecar.read(self.path)
        for name, shape in shapes.items():
            problem = sidecar.profile_problem(shape)
            if problem:
                raise EcRuntimeError(f"{self.path.name}: input {name} {problem}")

    # --- device-resident execution ------------------------------------------------------------
    def _context_for(self, key: tuple) -> _Context:
        if not self.cuda_graph:
            if not self._contexts:
                self._contexts[()] = _Context(self.engine.create_execution_context())
            return self._contexts[()]
        ctx = self._contexts.get(key)
        if ctx is None:
            while len(self._contexts) >= self.graph_shapes:
                self._drop(self._contexts.popitem(last=False)[1])
            ctx = self._contexts[key] = _Context(self._shared_memory_context())
        self._contexts.move_to_end(key)
        return ctx

    def _shared_memory_context(self):
        """A context on this runner's one block of activation memory (TensorRT 10.1+), else a plain one.

        The per-shape contexts of graph mode run one at a time on one stream, so they can share
        their activation memory, as TensorRT allows for contexts that never run concurrently.
        """
        strategy = getattr(getattr(self.trt, "ExecutionContextAllocationStrategy", None), "USER_MANAGED", None)
        size = getattr(self.engine, "device_memory_size_v2", None)
        if strategy is None or size is None:  # TensorRT 10.0: each context allocates its own
            return self.engine.create_execution_context()
        size = int(size)
        if self._scratch is None:
            self._scratch = (self.device.cuda.mem_alloc(max(size, 256)), size)  # cuMemAlloc: 256-byte aligned
        context = self.engine.create_execution_context(strategy)
        context.set_device_memory(int(self._scratch[0]), size)
        return context

    def _drop(self, ctx: _Context) -> None:
        if ctx.graph is not None and self._graphs_api is not None:
            self._graphs_api.destroy(ctx.graph)
        ctx.graph = None

    def execute_device(self, inputs: Mapping[str, DeviceArray]) -> dict[str, DeviceArray]:
        """Run on inputs already on the GPU; outputs stay on the GPU (in this runner's buffers).

        Work is enqueued on the device's stream and not synchronised: the caller does that (or
        feeds the outputs to the next runner on the same device first).
        """
        stream = self.device.stream
        self.check_shapes({n: inputs[n].shape for n in self._inputs})
        key = tuple(tuple(inputs[n].shape) for n in self._inputs)
        ctx = self._context_for(key)
        changed = False
        for name in self._inputs:
            shape = tuple(inputs[name].shape)
            if ctx.shapes.get(name) != shape:
                if not ctx.context.set_input_shape(name, shape):
                    raise EcRuntimeError(f"{self.path.name}: TensorRT refused input {name} of shape {shape}")
                ctx.shapes[name] = shape
                changed = True
            changed |= self._bind(ctx, name, inputs[name].ptr)
        outputs = {}
        for name in self._outputs:
            shape = tuple(ctx.context.get_tensor_shape(name))
            if min(shape) < 0:
                raise EcRuntimeError(f"{self.path.name}: TensorRT could not infer the shape of {name} from "
                                     f"the inputs {key}")
            buf = self._buffers[name]
            buf.ensure(int(np.prod(shape)) * self._dtypes[name].itemsize)
            changed |= self._bind(ctx, name, int(buf.device))
            outputs[name] = DeviceArray(int(buf.device), shape, self._dtypes[name])
        if changed:
            self._drop(ctx)
        if ctx.graph is not None:
            self._graphs_api.launch(ctx.graph, stream.handle)
            self.replays += 1
            return outputs
        if not ctx.context.execute_async_v3(stream.handle):
            raise EcRuntimeError(f"TensorRT execution of {self.path.name} failed")
        if self.cuda_graph:  # the eager launch above is the one TensorRT needs before a capture
            self._capture(ctx, stream)
        return outputs

    def _bind(self, ctx: _Context, name: str, ptr: int) -> bool:
        if ctx.bound.get(name) == ptr:
            return False
        if ctx.context.set_tensor_address(name, ptr) is False:
            raise EcRuntimeError(f"{self.path.name}: TensorRT refused the address of {name}")
        ctx.bound[name] = ptr
        return True

    def _capture(self, ctx: _Context, stream) -> None:
        try:
            ctx.graph = capture(self._graphs_api, stream.handle, lambda: ctx.context.execute_async_v3(stream.handle))
            self.captures += 1
        except Exception as exc:  # an engine or driver that cannot capture: run eagerly from now on
            warnings.warn(f"CUDA graph capture failed for {self.path.name}, running without graphs: {exc}",
                          RuntimeWarning, stacklevel=3)
            self.cuda_graph = False

    @property
    def graphs(self) -> int:
        """How many shapes have a captured CUDA graph right now."""
        return sum(ctx.graph is not None for ctx in self._contexts.values())

    # --- host API ---------------------------------------------------------------------------------
    def upload(self, feed: Mapping[str, np.ndarray]) -> dict[str, DeviceArray]:
        """Copy the host arrays in ``feed`` that are inputs of this engine into its input buffers."""
        cuda, stream = self.device.cuda, self.device.stream
        out = {}
        for name in self._inputs:
            if name not in feed:
                continue
            arr = np.ascontiguousarray(feed[name], dtype=self._dtypes[name])
            buf = self._buffers[name]
            buf.ensure(arr.nbytes)
            staged = buf.host_view(arr.shape, arr.dtype)
            staged[...] = arr
            cuda.memcpy_htod_async(buf.device, staged, stream)
            out[name] = DeviceArray(int(buf.device), arr.shape, arr.dtype)
        return out

    def stage_download(self, name: str, arr: DeviceArray) -> np.ndarray:
        """Enqueue a device-to-host copy of one of this runner's outputs into its pinned mirror."""
        buf = self._buffers[name]
        view = buf.host_view(arr.shape, arr.dtype)
        self.device.cuda.memcpy_dtoh_async(view, arr.ptr, self.device.stream)
        return view

    def download(self, arrays: Mapping[str, DeviceArray]) -> dict[str, np.ndarray]:
        """Copy this runner's outputs back to the host and synchronise the stream."""
        staged = {name: self.stage_download(name, arr) for name, arr in arrays.items()}
        self.device.stream.synchronize()
        return {n: np.array(v, dtype=np.float32, copy=True) for n, v in staged.items()}

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_shapes({n: np.shape(feed[n]) for n in self._inputs})
        with self.device:
            return self.download(self.execute_device(self.upload(feed)))

    def _deactivate(self) -> None:
        with self.device:
            for ctx in self._contexts.values():
                self._drop(ctx)
            self._contexts.clear()
            for buf in self._buffers.values():
                buf.free()
            if self._scratch is not None:
                self._scratch[0].free()
            self._reset()


class TrtChain:
    """Runners on one :class:`CudaDevice` run in sequence with intermediates kept on the GPU.

    ``links`` maps each later runner's input name to ``(stage index, tensor name)``, where the
    tensor is an output of that stage or one of its (already uploaded) inputs; inputs not linked
    are uploaded from the host feed. Only the tensors named in ``fetch`` come back.
    """

    def __init__(self, runners: list[TrtRunner], links: list[dict[str, tuple[int, str]]]) -> None:
        self.runners = runners
        self.links = links

    def run(self, feed: Mapping[str, np.ndarray], fetch: list[tuple[int, str]],
            timer: Callable[[str, float], None] | None = None, names: Sequence[str] | None = None
            ) -> dict[str, np.ndarray]:
        """Run every stage; return ``{output name: array}`` for each ``(stage index, output name)``.

        All host inputs are uploaded first, then the stages run, then the fetched outputs come
        back, all on one stream. With ``timer``, CUDA events between those phases time them on
        the GPU, and ``timer(stage, seconds)`` is called for ``h2d``, each stage (named by
        ``names``, default ``stage0``...) and ``d2h``, as trtexec reports them.
        """
        device = self.runners[0].device
        names = list(names or [f"stage{i}" for i in range(len(self.runners))])
        with device:
            events = []

            def mark():
                if timer is not None:
                    events.append(device.cuda.Event().record(device.stream))
            mark()
            uploaded = [runner.upload({n: v for n, v in feed.items() if n not in link})
                        for runner, link in zip(self.runners, self.links)]
            mark()
            produced: list[dict[str, DeviceArray]] = []
            for runner, link, dev in zip(self.runners, self.links, uploaded):
                dev.update({n: produced[i][out] for n, (i, out) in link.items()})
                produced.append({**dev, **runner.execute_device(dev)})  # later stages may reuse inputs too
                mark()
            staged = {name: self.runners[i].stage_download(name, produced[i][name]) for i, name in fetch}
            mark()
            device.stream.synchronize()
            if timer is not None:
                for stage, start, end in zip(["h2d", *names, "d2h"], events, events[1:]):
                    timer(stage, end.time_since(start) / 1e3)
            return {n: np.array(v, dtype=np.float32, copy=True) for n, v in staged.items()}
