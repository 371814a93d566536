"""CUDA graph capture through the CUDA runtime API (released pycuda has no capture API).

:func:`graph_api` returns an object with these calls on raw stream handles (``pycuda``'s
``Stream.handle`` is one):

* ``begin_capture(stream)`` -> None       (``cudaStreamBeginCapture``, thread-local mode)
* ``end_capture(stream)`` -> graph         (``cudaStreamEndCapture``)
* ``instantiate(graph)`` -> executable     (``cudaGraphInstantiateWithFlags``, then the graph is destroyed)
* ``launch(executable, stream)`` -> None   (``cudaGraphLaunch``)
* ``discard(graph)`` -> None               (``cudaGraphDestroy``, for a capture that is thrown away)
* ``destroy(executable)`` -> None          (``cudaGraphExecDestroy``)

Two implementations, tried in this order: cuda-python (``cuda.bindings.runtime``, or
``cuda.cudart`` in older releases) and ctypes on ``libcudart``. :func:`capture` wraps a
callable in begin/end capture and always ends the capture, even when the callable fails, so a
shared stream never stays in capture mode.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
from contextlib import suppress
from typing import Callable

from ec_runtime.errors import EcRuntimeError, MissingDependencyError

CAPTURE_MODE_THREAD_LOCAL = 1  # cudaStreamCaptureModeThreadLocal
LIBCUDART_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "cudart64_12.dll")


class CudaPythonGraphs:
    """Graph calls through cuda-python's runtime module (every call returns ``(err, *values)``)."""

    name = "cuda-python"

    def __init__(self, cudart) -> None:
        self.rt = cudart

    def _check(self, result, what: str):
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise EcRuntimeError(f"{what} failed: {err!r}")
        return values[0] if values else None

    def begin_capture(self, stream: int) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream: int):
        return self._check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")

    def instantiate(self, graph):
        try:
            return self._check(self.rt.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags")
        finally:
            self.rt.cudaGraphDestroy(graph)

    def discard(self, graph) -> None:
        self.rt.cudaGraphDestroy(graph)

    def launch(self, executable, stream: int) -> None:
        self._check(self.rt.cudaGraphLaunch(executable, stream), "cudaGraphLaunch")

    def destroy(self, executable) -> None:
        self.rt.cudaGraphExecDestroy(executable)


class CtypesGraphs:
    """Graph calls through ctypes on ``libcudart`` (CUDA 11.4 or later)."""

    name = "libcudart"

    def __init__(self, lib) -> None:
        self.lib = lib
        for fn in ("cudaStreamBeginCapture", "cudaStreamEndCapture", "cudaGraphInstantiateWithFlags",
                   "cudaGraphLaunch", "cudaGraphDestroy", "cudaGraphExecDestroy"):
            getattr(lib, fn).restype = ctypes.c_int

    def _check(self, err: int, what: str) -> None:
        if err != 0:
            name = ""
            with suppress(Exception):
                self.lib.cudaGetErrorName.restype = ctypes.c_char_p
                name = " " + self.lib.cudaGetErrorName(err).decode()
            raise EcRuntimeError(f"{what} failed: CUDA error {err}{name}")

    def begin_capture(self, stream: int) -> None:
        self._check(self.lib.cudaStreamBeginCapture(ctypes.c_void_p(stream), ctypes.c_int(CAPTURE_MODE_THREAD_LOCAL)),
                    "cudaStreamBeginCapture")

    def end_capture(self, stream: int):
        graph = ctypes.c_void_p()
        self._check(self.lib.cudaStreamEndCapture(ctypes.c_void_p(stream), ctypes.byref(graph)), "cudaStreamEndCapture")
        return graph

    def instantiate(self, graph):
        executable = ctypes.c_void_p()
        try:
            self._check(self.lib.cudaGraphInstantiateWithFlags(ctypes.byref(executable), graph, ctypes.c_ulonglong(0)),
                        "cudaGraphInstantiateWithFlags")
        finally:
            self.lib.cudaGraphDestroy(graph)
        return executable

    def discard(self, graph) -> None:
        self.lib.cudaGraphDestroy(graph)

    def launch(self, executable, stream: int) -> None:
        self._check(self.lib.cudaGraphLaunch(executable, ctypes.c_void_p(stream)), "cudaGraphLaunch")

    def destroy(self, executable) -> None:
        self.lib.cudaGraphExecDestroy(executable)


def _cuda_python():
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        with suppress(ImportError):
            return importlib.import_module(name)
    return None


def _libcudart():
    import os

    names = list(LIBCUDART_NAMES)
    found = ctypes.util.find_library("cudart")
    if found:
        names.insert(0, found)
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):  # JetPack's place
        if home:
            names.append(os.path.join(home, "lib64", "libcudart.so"))
    for name in names:
        with suppress(OSError):
            return ctypes.CDLL(name)
    return None


def graph_api():
    """The first available graph implementation; :class:`MissingDependencyError` when there is none."""
    cudart = _cuda_python()
    if cudart is not None:
        return CudaPythonGraphs(cudart)
    lib = _libcudart()
    if lib is not None:
        return CtypesGraphs(lib)
    raise MissingDependencyError("CUDA graphs need the CUDA runtime: `pip install cuda-python` "
                                 "(or a libcudart on the library path)")


def capture(api, stream: int, work: Callable[[], object]):
    """Capture ``work()`` (which enqueues on ``stream``) into an instantiated graph.

    The capture is ended in every case; when ``work`` or the capture fails, the partial graph
    is discarded and the error re-raised.
    """
    api.begin_capture(stream)
    try:
        ok = work()
    except BaseException:
        with suppress(Exception):
            api.discard(api.end_capture(stream))
        raise
    graph = api.end_capture(stream)
    if ok is False:
        api.discard(graph)
        raise EcRuntimeError("the work enqueued during CUDA graph capture failed")
    return api.instantiate(graph)
