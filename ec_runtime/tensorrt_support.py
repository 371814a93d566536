"""TensorRT module discovery, GPU identity and the engine sidecar. No torch, no pycuda at import.

Two Python modules can build and run engines:

* ``tensorrt``: TensorRT 10.x (JetPack 6/7, servers) and 11.x;
* TensorRT-RTX, whose builder also works ahead of time on a machine without a GPU (that is how
  the test suite proves every ONNX file builds). Its pip wheels import as
  ``tensorrt_rtx_bindings``; NVIDIA's SDK wheel imports as ``tensorrt_rtx``. Both are one family:
  an engine built with either loads with either, at the same release.

Every engine file ``X.engine`` has a sidecar ``X.engine.json`` (:class:`EngineSidecar`) recording
what it was built with; :meth:`EngineSidecar.check` refuses an engine that does not match the
TensorRT and GPU at hand, with a message that says how to rebuild.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ec_runtime.errors import EngineMismatchError, MissingDependencyError, ModelNotFoundError

TRT_MODULES = ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings")
SIDECAR_FORMAT = "ec-deploy/trt-engine/v1"


def import_tensorrt(prefer: str | None = None):
    """Import a TensorRT Python module: ``prefer`` if given, else ``tensorrt``, else TensorRT-RTX.

    Raises :class:`MissingDependencyError` naming the extra to install when none is present.
    """
    names = tuple(n for n in TRT_MODULES if module_family(n) == module_family(prefer)) if prefer else TRT_MODULES
    if prefer and prefer not in names:
        names = (prefer,)
    elif prefer:
        names = (prefer,) + tuple(n for n in names if n != prefer)
    errors = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError as exc:  # an installed but broken module is reported too
            errors.append(f"{name}: {exc}")
    raise MissingDependencyError(
        "TensorRT is not installed. Install it with `pip install ec-deploy[trt]` (on Jetson it comes "
        "with JetPack), or TensorRT-RTX with `pip install tensorrt-rtx-cu13-bindings tensorrt-rtx-cu13-libs`. "
        f"Tried: {'; '.join(errors)}")


def trt_module_name(trt) -> str:
    """``tensorrt``, ``tensorrt_rtx`` or ``tensorrt_rtx_bindings`` for an imported module."""
    return trt.__name__.split(".")[0]


def module_family(name: str) -> str:
    """``tensorrt`` or ``tensorrt_rtx``: module names that load the same engines."""
    return "tensorrt_rtx" if name.startswith("tensorrt_rtx") else name


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class GpuInfo:
    """Name and compute capability (``"8.7"``) of a CUDA device."""

    name: str
    compute_capability: str


def current_gpu(device: int = 0) -> GpuInfo | None:
    """The GPU at ``device``, asked of pycuda when installed, else of ``nvidia-smi``; None without one."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() > device:
            dev = cuda.Device(device)
            major, minor = dev.compute_capability()
            return GpuInfo(dev.name(), f"{major}.{minor}")
    except Exception:  # no pycuda, no driver, or no device: fall through to nvidia-smi
        pass
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    rows = [r.split(",") for r in out.strip().splitlines() if r.strip()]
    if len(rows) <= device:
        return None
    return GpuInfo(rows[device][0].strip(), rows[device][1].strip())


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


# Major-version pairs across which TensorRT runs version-compatible engines (build -> runtime),
# per the TensorRT support matrix; within a major version any later release works.
CROSS_MAJOR_COMPATIBLE = {(8, 9), (8, 10), (10, 11)}


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for p in str(version).split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def runtime_can_load(module: str, built: str, installed: str, version_compatible: bool) -> bool:
    """Whether TensorRT ``installed`` can run an engine built by ``built``.

    Without version compatibility the versions must be equal. A version-compatible engine runs
    on the same or a later TensorRT: any later release of the same major version, or the next
    supported major (8 -> 9/10, 10 -> 11). TensorRT-RTX engines need the exact release.
    """
    if installed == built:
        return True
    if not version_compatible or module != "tensorrt":
        return False
    b, i = _version_tuple(built), _version_tuple(installed)
    if i < b:
        return False
    return b[0] == i[0] or (b[0], i[0]) in CROSS_MAJOR_COMPATIBLE


@dataclass
class EngineSidecar:
    """What an engine was built with. Written next to the engine as ``<engine>.json``."""

    tensorrt_module: str
    tensorrt_version: str
    precision: str
    profile: dict[str, list[int]]  # {"min": [N, H, W], "opt": [...], "max": [...]}
    onnx_file: str
    onnx_sha256: str
    engine_sha256: str = ""
    gpu_name: str | None = None
    compute_capability: str | None = None
    version_compatible: bool = False
    tf32: bool | None = None  # whether TensorRT could pick TF32 kernels (None: not recorded)
    built_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    format: str = SIDECAR_FORMAT

    def profile_problem(self, shape) -> str | None:
        """None when an input of ``shape`` (N, C, H, W) fits the profile, else what is wrong."""
        n, h, w = int(shape[0]), int(shape[-2]), int(shape[-1])
        lo, hi = self.profile["min"], self.profile["max"]
        if all(a <= d <= b for a, d, b in zip(lo, (n, h, w), hi)):
            return None
        fmt = "x".join
        grow = [max(d, b) for d, b in zip((n, h, w), hi)]
        shrink = [min(d, a) for d, a in zip((n, h, w), lo)]
        suggestion = f"{fmt(map(str, shrink))},{fmt(map(str, self.profile['opt']))},{fmt(map(str, grow))}"
        return (f"of shape {n}x{h}x{w} (NxHxW) is outside the engine's optimization profile "
                f"(min {fmt(map(str, lo))}, max {fmt(map(str, hi))}); rebuild the engine with "
                f"`ec-export engine --shapes {suggestion}`")

    def write(self, engine_path: str | Path) -> Path:
        path = sidecar_path(engine_path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, engine_path: str | Path) -> "EngineSidecar":
        path = sidecar_path(engine_path)
        if not path.exists():
            raise ModelNotFoundError(f"engine sidecar not found: {path} (rebuild the engine with `ec-export engine`)")
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise EngineMismatchError(f"engine sidecar {path} is not valid JSON: {exc}") from exc
        if data.get("format") != SIDECAR_FORMAT:
            raise EngineMismatchError(f"{path} is not an ec-deploy engine sidecar (format {data.get('format')!r})")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def check(self, trt, gpu: GpuInfo | None, engine_path: str | Path | None = None) -> None:
        """Raise :class:`EngineMismatchError` unless this engine can run on ``trt`` and ``gpu``.

        Rules: same TensorRT module; the same TensorRT version, or for a version-compatible
        engine the same or a later one (:func:`runtime_can_load`); same compute capability when
        both are known; and, when
        ``engine_path`` is given and the sidecar records it, the engine file's sha256.
        """
        where = f" ({engine_path})" if engine_path else ""
        rebuild = "Rebuild it on this machine with `ec-export engine <onnx>`."
        module = trt_module_name(trt)
        if module_family(module) != module_family(self.tensorrt_module):
            raise EngineMismatchError(f"engine{where} was built with {self.tensorrt_module}, but {module} is "
                                      f"loaded. {rebuild}")
        version = str(trt.__version__)
        if not runtime_can_load(module_family(module), self.tensorrt_version, version, self.version_compatible):
            rule = (" (a version-compatible engine runs on the same or a later TensorRT)"
                    if self.version_compatible and module == "tensorrt" else "")
            raise EngineMismatchError(f"engine{where} was built with {module} {self.tensorrt_version}, but "
                                      f"{version} is installed{rule}. {rebuild}")
        if gpu is not None and self.compute_capability and gpu.compute_capability != self.compute_capability:
            raise EngineMismatchError(f"engine{where} was built for compute capability {self.compute_capability} "
                                      f"({self.gpu_name}), but this GPU is {gpu.name} ({gpu.compute_capability}). "
                                      f"{rebuild}")
        if engine_path is not None and self.engine_sha256 and sha256_file(engine_path) != self.engine_sha256:
            raise EngineMismatchError(f"engine{where} does not match the sha256 its sidecar records; it was "
                                      f"modified or replaced. {rebuild}")
