"""TensorRT engines behind the :class:`~ec_runtime.runners.Runner` interface (TensorRT 10.x/11.x, pycuda).

Only the name-based I/O API is used (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_dtype``, ``set_input_shape``, ``get_tensor_shape``, ``set_tensor_address``,
``execute_async_v3``): it exists in 10.x and 11.x, while the binding-index API is gone.

* Device buffers are reused across calls and grown when a larger shape arrives; host staging
  buffers are page-locked (``cuda.pagelocked_empty``) so copies run asynchronously.
* One CUDA stream per :class:`CudaDevice`; runners sharing a device share the stream, so
  :class:`TrtChain` runs canny -> edge -> inpaint with intermediates left on the GPU.
* Optional CUDA-graph capture per input shape (after one ordinary launch, as TensorRT requires
  after a shape change); any failure to capture disables graphs for that runner.
* :class:`~ec_runtime.tensorrt_support.EngineSidecar` is checked before deserializing, so an
  engine built for another TensorRT version or GPU is refused with a clear message.

tensorrt and pycuda are imported in :meth:`TrtRunner.activate`, never at module import.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

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


def check_engine(engine_path: str | os.PathLike, device: int = 0):
    """Refuse an engine that is missing or was built for another TensorRT or GPU; returns the trt module.

    Reads the sidecar, imports the TensorRT module it names and checks version, compute
    capability and the engine's sha256 (:meth:`EngineSidecar.check`). Needs no pycuda.
    """
    path = Path(engine_path)
    if not path.is_file():
        raise ModelNotFoundError(f"TensorRT engine not found: {path} (build one with `ec-export engine`)")
    sidecar = EngineSidecar.read(path)
    trt = import_tensorrt(prefer=sidecar.tensorrt_module)
    sidecar.check(trt, current_gpu(device), path)
    return trt


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

    def host_view(self, shape, dtype) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.host[:n].view(dtype).reshape(shape)


class TrtRunner(Runner):
    """A deserialized TensorRT engine with reusable buffers on one CUDA device.

    ``engine_path`` needs its sidecar ``<engine>.json``. ``device`` is a GPU index or a shared
    :class:`CudaDevice`. ``cuda_graph`` captures one CUDA graph per input shape.
    """

    name = "TrtRunner"

    def __init__(self, engine_path: str | os.PathLike, device: int | CudaDevice = 0,
                 cuda_graph: bool = False) -> None:
        super().__init__()
        self.path = Path(engine_path)
        self._device_arg = device
        self.cuda_graph = cuda_graph
        self.device: CudaDevice | None = None
        self._dtypes: dict[str, np.dtype] = {}
        self._buffers: dict[str, _GrowingBuffer] = {}
        self._graphs: dict[tuple, object] = {}
        self._bound: dict[str, int] = {}

    def _activate(self) -> None:
        index = self._device_arg.index if isinstance(self._device_arg, CudaDevice) else int(self._device_arg)
        trt = check_engine(self.path, index)
        self.device = self._device_arg if isinstance(self._device_arg, CudaDevice) else CudaDevice(index)
        self.trt = trt
        with self.device:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise EcRuntimeError(f"TensorRT could not deserialize {self.path}; rebuild it with `ec-export engine`")
            self.context = self.engine.create_execution_context()
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            self._dtypes[name] = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self._inputs if is_input else self._outputs).append(name)
            self._buffers[name] = _GrowingBuffer(self.device.cuda)

    # --- device-resident execution ------------------------------------------------------------
    def execute_device(self, inputs: Mapping[str, DeviceArray]) -> dict[str, DeviceArray]:
        """Run on inputs already on the GPU; outputs stay on the GPU (in this runner's buffers).

        Work is enqueued on the device's stream and not synchronised: the caller does that (or
        feeds the outputs to the next runner on the same device first).
        """
        cuda, stream = self.device.cuda, self.device.stream
        key = tuple((n, inputs[n].shape) for n in self._inputs)
        moved = False
        for name in self._inputs:
            arr = inputs[name]
            if not self.context.set_input_shape(name, tuple(arr.shape)):
                raise EcRuntimeError(f"{self.path.name}: input {name} shape {arr.shape} is outside the engine's "
                                     "optimization profile; rebuild it with a larger --max-shape")
            moved |= self._bind(name, arr.ptr)
        outputs = {}
        for name in self._outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            buf = self._buffers[name]
            grown = buf.ensure(int(np.prod(shape)) * self._dtypes[name].itemsize)
            moved |= self._bind(name, int(buf.device)) or grown
            outputs[name] = DeviceArray(int(buf.device), shape, self._dtypes[name])
        if moved:
            self._graphs.clear()
        graph = self._graphs.get(key)
        if graph is not None:
            graph.launch(stream)
        elif not self.context.execute_async_v3(stream.handle):
            raise EcRuntimeError(f"TensorRT execution of {self.path.name} failed")
        elif self.cuda_graph:
            self._capture(key, cuda, stream)
        return outputs

    def _bind(self, name: str, ptr: int) -> bool:
        if self._bound.get(name) == ptr:
            return False
        self.context.set_tensor_address(name, ptr)
        self._bound[name] = ptr
        return True

    def _capture(self, key, cuda, stream) -> None:
        try:
            stream.begin_capture()
            self.context.execute_async_v3(stream.handle)
            graph = stream.end_capture()
            instantiate = getattr(graph, "instance", None) or getattr(graph, "instantiate")
            self._graphs[key] = instantiate()
        except Exception as exc:  # an older pycuda, or an engine TensorRT cannot capture
            warnings.warn(f"CUDA graph capture disabled for {self.path.name}: {exc}", RuntimeWarning)
            self.cuda_graph = False

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
        with self.device:
            return self.download(self.execute_device(self.upload(feed)))

    def _deactivate(self) -> None:
        with self.device:
            self._graphs.clear()
            self._buffers.clear()
            self.context = None
            self.engine = None
            self._runtime = None


class TrtChain:
    """Runners on one :class:`CudaDevice` run in sequence with intermediates kept on the GPU.

    ``links`` maps each later runner's input name to ``(stage index, tensor name)``, where the
    tensor is an output of that stage or one of its (already uploaded) inputs; inputs not linked
    are uploaded from the host feed. Only the tensors named in ``fetch`` come back.
    """

    def __init__(self, runners: list[TrtRunner], links: list[dict[str, tuple[int, str]]]) -> None:
        self.runners = runners
        self.links = links

    def run(self, feed: Mapping[str, np.ndarray], fetch: list[tuple[int, str]]) -> dict[str, np.ndarray]:
        """Run every stage; return ``{output name: array}`` for each ``(stage index, output name)``."""
        device = self.runners[0].device
        with device:
            produced: list[dict[str, DeviceArray]] = []
            for runner, link in zip(self.runners, self.links):
                dev = runner.upload({n: v for n, v in feed.items() if n not in link})
                dev.update({n: produced[i][out] for n, (i, out) in link.items()})
                produced.append({**dev, **runner.execute_device(dev)})  # later stages may reuse inputs too
            staged = {name: self.runners[i].stage_download(name, produced[i][name]) for i, name in fetch}
            device.stream.synchronize()
            return {n: np.array(v, dtype=np.float32, copy=True) for n, v in staged.items()}
