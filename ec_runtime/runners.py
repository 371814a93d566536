"""Runners: one interface over ONNX Runtime and TensorRT, in the style of Polygraphy.

A runner is created cheaply, loads its model in :meth:`Runner.activate` (once), answers
:meth:`Runner.infer` with a dict of float32 numpy arrays, and frees everything in
:meth:`Runner.deactivate`. It is also a context manager::

    with OrtRunner("export/edge.onnx") as runner:
        out = runner.infer({"gray": gray, "edges": edges, "mask": mask})["edges_out"]
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ec_runtime.errors import EcRuntimeError, InvalidExportError, MissingDependencyError, ModelNotFoundError

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}


class Runner:
    """Base class: ``activate()``, ``infer(feed) -> dict``, ``deactivate()``, context manager."""

    name = "runner"

    def __init__(self) -> None:
        self.is_active = False
        self._activate_lock = threading.Lock()
        self._inputs: list[str] = []  # filled by _activate()
        self._outputs: list[str] = []

    # subclasses implement these three
    def _activate(self) -> None:
        raise NotImplementedError

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    @property
    def input_names(self) -> list[str]:
        return self._inputs

    @property
    def output_names(self) -> list[str]:
        return self._outputs

    def activate(self) -> "Runner":
        """Load the model (idempotent and thread-safe)."""
        with self._activate_lock:
            if not self.is_active:
                self._activate()
                self.is_active = True
        return self

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named float32 arrays; returns every output by name."""
        if not self.is_active:
            raise EcRuntimeError(f"{self.name} is not active; call activate() or use it as a context manager")
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise EcRuntimeError(f"{self.name}: missing inputs {missing}; the model takes {self.input_names}")
        return self._infer(feed)

    def deactivate(self) -> None:
        """Free the model (idempotent)."""
        with self._activate_lock:
            if self.is_active:
                self._deactivate()
                self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in str(text).split(".")[:3])


def provider_defaults(name: str, device: int) -> dict:
    """Options this toolkit sets on a GPU provider unless the caller sets them.

    CUDA: ``use_tf32=0`` (onnxruntime 1.18 and later), so FP32 convolutions stay FP32 on Ampere
    and newer, as the TensorRT engines do; TF32 can flip Canny's thresholded edge pixels.
    """
    import onnxruntime as ort

    options: dict = {"device_id": device}
    if name == "CUDAExecutionProvider" and _version(ort.__version__) >= (1, 18):
        options["use_tf32"] = 0
    return options


def resolve_providers(providers: Sequence[str] | str | None, device: int = 0, warn: bool = True) -> list:
    """Map ``None`` / ``"cpu"`` / ``"cuda"`` / ``"tensorrt"`` / full provider names, or ``(name, {options})``
    pairs, to ONNX Runtime provider entries.

    Options given with a provider are merged over :func:`provider_defaults` (``device_id``, and
    ``use_tf32=0`` for CUDA). Providers that this onnxruntime build lacks are dropped (with a
    warning unless ``warn`` is false); the CPU provider is always last, so a session can always
    be created.
    """
    import onnxruntime as ort

    if providers is None:
        providers = ["cpu"]
    elif isinstance(providers, str) or (isinstance(providers, tuple) and len(providers) == 2
                                        and isinstance(providers[1], dict)):
        providers = [providers]
    available = set(ort.get_available_providers())
    resolved: list = []
    cpu: object = "CPUExecutionProvider"
    for p in providers:
        raw, options = (p, {}) if isinstance(p, str) else (p[0], dict(p[1] or {}))
        name = PROVIDER_ALIASES.get(str(raw).lower(), raw)
        if name not in available:
            if not warn:
                continue
            warnings.warn(f"ONNX Runtime provider {name} is not available in this build "
                          f"(have {sorted(available)}); install onnxruntime-gpu (`pip install ec-deploy[gpu]`) "
                          "for CUDA/TensorRT. Falling back.", RuntimeWarning, stacklevel=3)
            continue
        if name in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            resolved.append((name, {**provider_defaults(name, device), **options}))
        elif name == "CPUExecutionProvider":
            cpu = (name, options) if options else name
        else:
            resolved.append((name, options) if options else name)
    resolved.append(cpu)
    return resolved


def primary_provider(providers: Sequence[str] | str | None, device: int = 0) -> str:
    """The provider a session created with ``providers`` runs on first (``"CPUExecutionProvider"``, ...)."""
    first = resolve_providers(providers, device, warn=False)[0]
    return first if isinstance(first, str) else first[0]


class OrtRunner(Runner):
    """An ONNX Runtime session, created once in :meth:`activate`.

    ``providers``: ``None`` (CPU), ``"cuda"``, ``"tensorrt"`` or a list of names. ``threads`` sets
    intra-op parallelism (``None``: ONNX Runtime's default, one per physical core). On CUDA the
    runner binds inputs and outputs with IO binding, so ONNX Runtime copies each once.
    ``session.run`` is thread-safe, so one runner may serve several threads.
    """

    name = "OrtRunner"

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | str | None = None,
                 threads: int | None = None, device: int = 0) -> None:
        super().__init__()
        self.path = Path(path)
        self.providers = providers
        self.threads = threads
        self.device = device
        self.session = None

    @property
    def on_cuda(self) -> bool:
        return bool(self.session) and self.session.get_providers()[0] in (
            "CUDAExecutionProvider", "TensorrtExecutionProvider")

    def _activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError("onnxruntime is not installed: `pip install ec-deploy`") from exc
        if not self.path.is_file():
            raise ModelNotFoundError(f"ONNX model not found: {self.path}" +
                                     (" (it is a directory)" if self.path.is_dir() else ""))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                providers=resolve_providers(self.providers, self.device))
        except Exception as exc:  # onnxruntime raises its own exception types
            from ec_runtime.exportdir import EXPORT_HINT

            reason = " ".join(str(exc).split())
            reason = reason.rsplit("failed:", 1)[-1] if "failed:" in reason else reason
            raise InvalidExportError(f"{self.path}: ONNX Runtime cannot load this model (truncated or corrupt?): "
                                     f"{reason[:200]}; re-create the export with {EXPORT_HINT}") from exc
        self._inputs = [i.name for i in self.session.get_inputs()]
        self._outputs = [o.name for o in self.session.get_outputs()]

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {n: np.ascontiguousarray(feed[n], dtype=np.float32) for n in self._inputs}
        if not self.on_cuda:
            values = self.session.run(self._outputs, arrays)
            return dict(zip(self._outputs, values))
        binding = self.session.io_binding()  # one per call: sessions are shared across threads
        for name, arr in arrays.items():
            binding.bind_cpu_input(name, arr)
        for name in self._outputs:
            binding.bind_output(name, "cuda", self.device)
        self.session.run_with_iobinding(binding)
        return dict(zip(self._outputs, binding.copy_outputs_to_cpu()))

    def to_device(self, arr: np.ndarray):
        """Upload a host array once as an ``OrtValue`` on this runner's CUDA device."""
        import onnxruntime as ort

        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr, dtype=np.float32), "cuda", self.device)

    def infer_on_device(self, feed: Mapping[str, object]) -> dict[str, object]:
        """Like :meth:`infer` on CUDA, but inputs may be ``OrtValue``s on the GPU and the outputs are
        ``OrtValue``s left there (``.numpy()`` copies one back). Chains sessions without host copies."""
        binding = self.session.io_binding()
        for name in self._inputs:
            value = feed[name]
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, np.ascontiguousarray(value, dtype=np.float32))
            else:
                binding.bind_ortvalue_input(name, value)
        for name in self._outputs:
            binding.bind_output(name, "cuda", self.device)
        self.session.run_with_iobinding(binding)
        return dict(zip(self._outputs, binding.get_outputs()))

    def _deactivate(self) -> None:
        self.session = None
