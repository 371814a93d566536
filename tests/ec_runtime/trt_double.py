"""The TensorRT half of the test double (see :mod:`tests.ec_runtime.gpu_double` for the rules).

Builder side: ``Builder``, ``OnnxParser``, ``IBuilderConfig`` (flags, TF32 on by default as in
TensorRT), optimization profiles and timing caches, enough for :func:`ec_export.engine.build_engine`.
The "plan" it serializes holds a JSON header (profile, flags, version-compatible) and the ONNX bytes.

Runtime side: ``Runtime``, ``ICudaEngine``, ``IExecutionContext`` with the name-based I/O API.
"""

from __future__ import annotations

import enum
import json
import types

import numpy as np

from tests.ec_runtime.gpu_double import PLAN_MAGIC, ContractError, Gpu


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class BuilderFlag(enum.IntEnum):  # only flags TensorRT 10 and TensorRT-RTX both have
    TF32 = 7
    VERSION_COMPATIBLE = 15


class ExecutionContextAllocationStrategy(enum.IntEnum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = Severity

    def __init__(self) -> None:
        pass

    def log(self, severity, msg) -> None:
        pass


class Logger(ILogger):
    WARNING = Severity.WARNING
    ERROR = Severity.ERROR

    def __init__(self, min_severity=Severity.WARNING) -> None:
        super().__init__()
        self.messages: list[str] = []

    def log(self, severity, msg) -> None:
        self.messages.append(str(msg))


def nptype(dtype) -> type:
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[DataType(dtype)]


# --- builder ---------------------------------------------------------------------------------------------

class _Tensor:
    def __init__(self, name: str, shape: tuple) -> None:
        self.name, self.shape = name, shape


class Network:
    def __init__(self, flags: int) -> None:
        self.flags, self.inputs, self.outputs, self.onnx = flags, [], [], b""

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, i: int) -> _Tensor:
        return self.inputs[i]


class OnnxParser:
    def __init__(self, network: Network, logger) -> None:
        self.network, self.errors = network, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int):
        return types.SimpleNamespace(desc=lambda: self.errors[i], node_name=lambda: "", node=lambda: -1,
                                     node_operator=lambda: "")

    def parse(self, data: bytes, path: str = "") -> bool:
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(bytes(data), providers=["CPUExecutionProvider"])
        except Exception as exc:
            self.errors.append(f"could not load the model: {exc}")
            return False
        dims = lambda v: tuple(d if isinstance(d, int) else -1 for d in v.shape)  # noqa: E731
        self.network.inputs = [_Tensor(v.name, dims(v)) for v in session.get_inputs()]
        self.network.outputs = [_Tensor(v.name, dims(v)) for v in session.get_outputs()]
        self.network.onnx = bytes(data)
        return True


class OptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, list] = {}

    def set_shape(self, name: str, lo, opt, hi) -> None:
        lo, opt, hi = (tuple(int(d) for d in s) for s in (lo, opt, hi))
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise ContractError(f"profile for {name}: need min <= opt <= max, got {lo} {opt} {hi}")
        self.shapes[name] = [lo, opt, hi]


class _TimingCache:
    def serialize(self) -> bytes:
        return b"timing cache"


class BuilderConfig:
    def __init__(self) -> None:
        self.flags = {BuilderFlag.TF32}  # TensorRT enables TF32 unless it is cleared
        self.profiles: list[OptimizationProfile] = []
        self.pools: dict = {}

    def set_flag(self, flag) -> None:
        self.flags.add(BuilderFlag(int(flag)))

    def clear_flag(self, flag) -> None:
        self.flags.discard(BuilderFlag(int(flag)))

    def get_flag(self, flag) -> bool:
        return BuilderFlag(int(flag)) in self.flags

    def set_memory_pool_limit(self, pool, size: int) -> None:
        self.pools[pool] = size

    def add_optimization_profile(self, profile: OptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes) -> _TimingCache:
        return _TimingCache()

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        return True

    def get_timing_cache(self) -> _TimingCache:
        return _TimingCache()


class Builder:
    def __init__(self, logger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> Network:
        return Network(flags)

    def create_builder_config(self) -> BuilderConfig:
        return BuilderConfig()

    def create_optimization_profile(self) -> OptimizationProfile:
        return OptimizationProfile()

    def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes | None:
        if len(config.profiles) != 1:
            raise ContractError("this double supports exactly one optimization profile")
        shapes = config.profiles[0].shapes
        missing = [t.name for t in network.inputs if t.name not in shapes]
        if missing:
            self.logger.log(Severity.ERROR, f"no optimization profile for dynamic inputs {missing}")
            return None
        header = {"profile": shapes, "flags": sorted(f.name for f in config.flags),
                  "strongly_typed": bool(network.flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED)),
                  "inputs": [[t.name, list(t.shape)] for t in network.inputs],
                  "outputs": [[t.name, list(t.shape)] for t in network.outputs]}
        return PLAN_MAGIC + json.dumps(header).encode() + b"\n" + network.onnx


def read_plan(data: bytes) -> tuple[dict, bytes]:
    """(header, ONNX bytes) of a plan written by :class:`Builder`."""
    if not data.startswith(PLAN_MAGIC):
        raise ValueError("not a plan of this double")
    head, onnx = data[len(PLAN_MAGIC):].split(b"\n", 1)
    return json.loads(head), onnx


# --- runtime ---------------------------------------------------------------------------------------------

class Runtime:
    def __init__(self, logger) -> None:
        self.logger = logger
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, data: bytes):
        try:
            header, onnx = read_plan(bytes(data))
        except ValueError:
            self.logger.log(Severity.ERROR, "deserialize_cuda_engine: invalid plan")
            return None
        if "VERSION_COMPATIBLE" in header["flags"] and not self.engine_host_code_allowed:
            self.logger.log(Severity.ERROR, "version-compatible engine holds host code; set "
                                            "engine_host_code_allowed to load it")
            return None
        return Engine(header, onnx, self.gpu)


class Engine:
    def __init__(self, header: dict, onnx: bytes, gpu: Gpu) -> None:
        import onnxruntime as ort

        self.header, self.gpu = header, gpu
        self.session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        self.io = [(n, TensorIOMode.INPUT, tuple(s)) for n, s in header["inputs"]]
        self.io += [(n, TensorIOMode.OUTPUT, tuple(s)) for n, s in header["outputs"]]
        self.symbolic = {v.name: list(v.shape) for v in self.session.get_inputs() + self.session.get_outputs()}
        self.contexts = 0

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, i: int) -> str:
        return self.io[i][0]

    def _entry(self, name: str):
        for entry in self.io:
            if entry[0] == name:
                return entry
        raise ContractError(f"engine has no tensor named {name!r}")

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._entry(name)[1]

    def get_tensor_dtype(self, name: str) -> DataType:
        self._entry(name)
        return DataType.FLOAT

    def get_tensor_shape(self, name: str) -> tuple:
        return self._entry(name)[2]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list:
        return [tuple(s) for s in self.header["profile"][name]]

    @property
    def device_memory_size_v2(self) -> int:
        """Activation memory one context needs (a fixed size in the double)."""
        return 1 << 20

    def create_execution_context(self, strategy=ExecutionContextAllocationStrategy.STATIC) -> "ExecutionContext":
        """STATIC contexts allocate their own activation memory (counted in ``gpu.counts["context_memory"]``);
        USER_MANAGED ones need :meth:`ExecutionContext.set_device_memory` before they run."""
        self.contexts += 1
        strategy = ExecutionContextAllocationStrategy(int(strategy))
        ctx = ExecutionContext(self)
        if strategy == ExecutionContextAllocationStrategy.USER_MANAGED:
            ctx.scratch = None
        else:
            self.gpu.counts["context_memory"] = self.gpu.counts.get("context_memory", 0) + self.device_memory_size_v2
        return ctx


class ExecutionContext:
    def __init__(self, engine: Engine) -> None:
        self.engine, self.gpu = engine, engine.gpu
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.scratch: tuple[int, int] | None = (0, 0)  # (address, size) of user-managed memory; (0, 0): own
        self.epoch = 0  # bumped by every shape change
        self.eager_needed = True  # TensorRT needs one enqueue outside capture after a shape change

    @property
    def _inputs(self) -> list[str]:
        return [n for n, mode, _ in self.engine.io if mode == TensorIOMode.INPUT]

    @property
    def _outputs(self) -> list[str]:
        return [n for n, mode, _ in self.engine.io if mode == TensorIOMode.OUTPUT]

    def set_input_shape(self, name: str, shape) -> bool:
        _, mode, static = self.engine._entry(name)
        if mode != TensorIOMode.INPUT:
            raise ContractError(f"set_input_shape on output {name}")
        shape = tuple(int(d) for d in shape)
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        if len(shape) != len(static) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
            return False
        if self.shapes.get(name) != shape:
            self.shapes[name] = shape
            self.epoch += 1
            self.eager_needed = True
        return True

    def _dims(self) -> dict[str, int] | None:
        if any(n not in self.shapes for n in self._inputs):
            return None
        dims: dict[str, int] = {}
        for name in self._inputs:
            for sym, d in zip(self.engine.symbolic[name], self.shapes[name]):
                if isinstance(sym, str) and dims.setdefault(sym, d) != d:
                    return None  # inconsistent input shapes: TensorRT reports an error at inference time
        return dims

    def get_tensor_shape(self, name: str) -> tuple:
        _, mode, static = self.engine._entry(name)
        if mode == TensorIOMode.INPUT:
            return self.shapes.get(name, static)
        dims = self._dims()
        if dims is None:
            return static  # -1 where dynamic: unknown until every input shape is set
        return tuple(dims[s] if isinstance(s, str) else s for s in self.engine.symbolic[name])

    def set_device_memory(self, memory: int, size: int) -> None:
        if self.scratch == (0, 0):
            raise ContractError("set_device_memory on a context that allocates its own memory")
        if size < self.engine.device_memory_size_v2 or int(memory) % 256:
            raise ContractError(f"set_device_memory: {size} bytes at 0x{int(memory):x}; need "
                                f"{self.engine.device_memory_size_v2} bytes, 256-byte aligned")
        self.gpu.span(int(memory), int(size), "set_device_memory")
        self.scratch = (int(memory), int(size))

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.engine._entry(name)
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        stream = self.gpu.stream(stream_handle)
        if self.scratch is None:
            raise ContractError("execute_async_v3 on a USER_MANAGED context before set_device_memory")
        if self._dims() is None:
            raise ContractError("execute_async_v3 before every input shape is set (or with inconsistent shapes)")
        shapes = {n: self.get_tensor_shape(n) for n in self._inputs + self._outputs}
        for name, shape in shapes.items():
            if name not in self.addresses:
                raise ContractError(f"execute_async_v3 with no address set for tensor {name!r}")
            self.gpu.span(self.addresses[name], int(np.prod(shape)) * 4, f"tensor {name!r} of shape {shape}")
        capturing = stream.capturing is not None
        if capturing and self.eager_needed:
            stream.capture_invalid = True
            raise ContractError("execute_async_v3 captured into a CUDA graph right after a shape change; "
                                "TensorRT needs one eager enqueue first")
        if not capturing:
            self.eager_needed = False
        addresses, epoch, gpu, session = dict(self.addresses), self.epoch, self.gpu, self.engine.session

        scratch = self.scratch

        def op():
            gpu.counts["execute"] += 1
            feed = {n: gpu.read(addresses[n], shapes[n], np.float32) for n in self._inputs}
            if scratch[1]:  # activations overwrite the user-managed memory while the engine runs
                gpu.write(scratch[0], np.full(scratch[1], 0xA5, np.uint8))
            for name, value in zip(self._outputs, session.run(self._outputs, feed)):
                gpu.write(addresses[name], value.astype(np.float32))

        def check_replay():
            if self.epoch != epoch:
                raise ContractError("CUDA graph replayed after its execution context was reshaped "
                                    f"({epoch} -> {self.epoch}) without an eager execute_async_v3")
        op.check_replay = check_replay
        stream.enqueue(op)
        return True


def make_tensorrt(gpu: Gpu, name: str = "tensorrt", version: str = "10.3.0") -> types.ModuleType:
    """A ``tensorrt`` module over ``gpu`` (``name`` may be ``tensorrt_rtx`` and so on)."""
    mod = types.ModuleType(name)
    mod.__version__ = version

    class _Runtime(Runtime):
        pass
    _Runtime.gpu = gpu
    for obj in (DataType, TensorIOMode, BuilderFlag, NetworkDefinitionCreationFlag, MemoryPoolType, ILogger,
                ExecutionContextAllocationStrategy,
                Logger, Builder, OnnxParser, nptype):
        setattr(mod, obj.__name__, obj)
    mod.Runtime = _Runtime
    return mod


def _module(name: str, mod: types.ModuleType | None = None) -> types.ModuleType:
    import importlib.machinery

    mod = mod or types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)  # so importlib.util.find_spec sees it
    return mod


def install(monkeypatch, gpu: Gpu | None = None, trt_name: str = "tensorrt", version: str = "10.3.0",
            graphs: bool = True) -> tuple[Gpu, types.ModuleType]:
    """Put the double's ``pycuda.driver``, ``cuda.bindings.runtime`` (with ``graphs``) and TensorRT
    module into ``sys.modules`` for one test; returns ``(gpu, trt module)``."""
    from tests.ec_runtime.gpu_double import make_cudart, make_pycuda

    gpu = gpu or Gpu()
    driver = _module("pycuda.driver", make_pycuda(gpu))
    pycuda = _module("pycuda")
    pycuda.driver = driver
    trt = _module(trt_name, make_tensorrt(gpu, trt_name, version))
    mods = {"pycuda": pycuda, "pycuda.driver": driver, trt_name: trt}
    if graphs:
        runtime = _module("cuda.bindings.runtime", make_cudart(gpu))
        bindings, cuda = _module("cuda.bindings"), _module("cuda")
        bindings.runtime, cuda.bindings = runtime, bindings
        mods.update({"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": runtime})
    else:
        mods.update({"cuda": None, "cuda.bindings": None, "cuda.bindings.runtime": None, "cuda.cudart": None})
    for name, mod in mods.items():
        monkeypatch.setitem(__import__("sys").modules, name, mod)
    return gpu, trt
