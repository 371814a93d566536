"""The few CUDA runtime calls the GPU acceptance checks make, through cuda-python or ctypes on libcudart.

Part of ``scripts/gpu_check.py``: device count and names, driver and runtime versions, streams,
device memory, copies and the capture status of a stream. CUDA graphs themselves are captured with
``ec_runtime.cuda_graphs``, the module the runtime uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import sys
from pathlib import Path

LIBCUDART = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")


def _libcudart_candidates() -> list[str]:
    """libcudart by name (already loaded by torch or cupy, or on the library path), then the copies that
    the ``nvidia-cuda-runtime`` wheels and torch's CUDA wheels carry in site-packages."""
    names = [n for n in (ctypes.util.find_library("cudart"), *LIBCUDART) if n]
    for base in map(Path, sys.path):
        for pattern in ("nvidia/cuda_runtime/lib/libcudart.so*", "nvidia/cu*/lib/libcudart.so*", "torch/lib/libcudart*.so*"):
            names += sorted(str(p) for p in base.glob(pattern)) if base.is_dir() else []
    return names



class NoCudaRuntime(Exception):
    """Neither cuda-python nor a libcudart could be loaded."""


def optional_import(name: str):
    """The module, or None when it is not installed (or fails to import)."""
    try:
        return importlib.import_module(name)
    except Exception:
        return None


class CudaRuntime:
    """The few CUDA runtime calls the checks need, through cuda-python or ctypes on libcudart."""

    def __init__(self):
        self.rt = optional_import("cuda.bindings.runtime") or optional_import("cuda.cudart")
        self.lib = None
        self.via = "cuda-python" if self.rt is not None else None
        if self.rt is None:
            for name in _libcudart_candidates():
                try:
                    self.lib = ctypes.CDLL(name)
                    self.via = f"ctypes ({name})"
                    break
                except OSError:
                    continue
        if self.via is None:
            raise NoCudaRuntime("no CUDA runtime: neither cuda-python (pip install cuda-python) nor libcudart is installed")

    def _call(self, name: str, *args, out=None, out_last: bool = False):
        """Call ``name``; raise RuntimeError naming the CUDA error.

        With ctypes, ``out`` is the type of the call's out-argument (first, or last with ``out_last``).
        """
        if self.rt is not None:
            result = getattr(self.rt, name)(*args)
            err, *values = result if isinstance(result, tuple) else (result,)
            if int(err) != 0:
                raise RuntimeError(f"{name} failed: {getattr(err, 'name', err)}")
            return values[0] if values else None
        fn = getattr(self.lib, name)
        fn.restype = ctypes.c_int
        holder = out() if out is not None else None
        ref = (ctypes.byref(holder),) if holder is not None else ()
        err = fn(*args, *ref) if out_last else fn(*ref, *args)
        if err != 0:
            self.lib.cudaGetErrorName.restype = ctypes.c_char_p
            raise RuntimeError(f"{name} failed: {self.lib.cudaGetErrorName(err).decode()} ({err})")
        return holder.value if holder is not None else None

    def device_count(self) -> int:
        return int(self._call("cudaGetDeviceCount", out=ctypes.c_int))

    def versions(self) -> tuple[int, int]:
        """(driver, runtime) as 1000*major + 10*minor."""
        return int(self._call("cudaDriverGetVersion", out=ctypes.c_int)), int(self._call("cudaRuntimeGetVersion",
                                                                                         out=ctypes.c_int))

    def device_name(self, index: int) -> str:
        if self.rt is not None:
            prop = self._call("cudaGetDeviceProperties", index)
            name = prop.name
            return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")
        return f"device {index}"

    def set_device(self, index: int) -> None:
        self._call("cudaSetDevice", int(index) if self.rt is not None else ctypes.c_int(index))

    def stream(self) -> int:
        if self.rt is not None:
            return int(self._call("cudaStreamCreateWithFlags", 1))  # cudaStreamNonBlocking
        return int(self._call("cudaStreamCreateWithFlags", ctypes.c_uint(1), out=ctypes.c_void_p) or 0)

    def malloc(self, nbytes: int) -> int:
        if self.rt is not None:
            return int(self._call("cudaMalloc", nbytes))
        return int(self._call("cudaMalloc", ctypes.c_size_t(nbytes), out=ctypes.c_void_p))

    def _p(self, value):
        return value if self.rt is not None else ctypes.c_void_p(value)

    def free(self, ptr: int) -> None:
        self._call("cudaFree", self._p(ptr))

    def memcpy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        """Synchronous copy; kind 1 host->device, 2 device->host, 3 device->device."""
        size = nbytes if self.rt is not None else ctypes.c_size_t(nbytes)
        self._call("cudaMemcpy", self._p(dst), self._p(src), size, self._kind(kind))

    def memcpy_async(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        size = nbytes if self.rt is not None else ctypes.c_size_t(nbytes)
        self._call("cudaMemcpyAsync", self._p(dst), self._p(src), size, self._kind(kind), self._p(stream))

    def memset_async(self, ptr: int, value: int, nbytes: int, stream: int) -> None:
        size = nbytes if self.rt is not None else ctypes.c_size_t(nbytes)
        self._call("cudaMemsetAsync", self._p(ptr), int(value) if self.rt is not None else ctypes.c_int(value),
                   size, self._p(stream))

    def _kind(self, kind: int):
        return self.rt.cudaMemcpyKind(kind) if self.rt is not None else ctypes.c_int(kind)

    def synchronize(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", self._p(stream))

    def destroy_stream(self, stream: int) -> None:
        self._call("cudaStreamDestroy", self._p(stream))

    def capturing(self, stream: int) -> bool:
        """Whether ``stream`` is in capture mode (status other than cudaStreamCaptureStatusNone)."""
        return int(self._call("cudaStreamIsCapturing", self._p(stream), out=ctypes.c_int, out_last=True)) != 0


def cuda_devices() -> dict:
    """``{"count", "names", "driver", "runtime", "via"}`` or ``{"count": 0, "why": ...}``; never raises."""
    try:
        rt = CudaRuntime()
        count = rt.device_count()
        driver, runtime = rt.versions()
        return {"count": count, "names": [rt.device_name(i) for i in range(count)], "via": rt.via,
                "driver": f"{driver // 1000}.{driver % 1000 // 10}", "runtime": f"{runtime // 1000}.{runtime % 1000 // 10}"}
    except (NoCudaRuntime, RuntimeError) as exc:
        why = str(exc)
    torch = optional_import("torch")
    if torch is not None and torch.cuda.is_available():
        n = torch.cuda.device_count()
        return {"count": n, "names": [torch.cuda.get_device_name(i) for i in range(n)], "via": "torch",
                "runtime": torch.version.cuda}
    return {"count": 0, "why": why if torch is None else f"{why}; torch {torch.__version__} sees no CUDA device"}
