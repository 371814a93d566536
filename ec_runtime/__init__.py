"""ec_runtime: torch-free EdgeConnect inference on ONNX Runtime (CPU/CUDA) or TensorRT.

Base install: numpy, opencv, onnxruntime. TensorRT and pycuda are optional and imported lazily.
This package never imports torch, ec_train or ec_export.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("ec-deploy")
except PackageNotFoundError:
    __version__ = "0+unknown"

from ec_runtime.errors import (  # noqa: E402
    EcRuntimeError,
    EngineMismatchError,
    InputError,
    InvalidExportError,
    MissingDependencyError,
    ModelNotFoundError,
    NoHoleWarning,
    OutputError,
    ServerError,
)

__all__ = ["__version__", "EcRuntimeError", "EngineMismatchError", "InputError",
           "InvalidExportError", "MissingDependencyError", "ModelNotFoundError", "NoHoleWarning",
           "OutputError", "ServerError", "Inpainter", "ExportDir"]


def __getattr__(name: str):
    if name == "Inpainter":  # imported on first use, so `import ec_runtime` stays light
        from ec_runtime.pipeline import Inpainter

        return Inpainter
    if name == "ExportDir":
        from ec_runtime.exportdir import ExportDir

        return ExportDir
    raise AttributeError(f"module 'ec_runtime' has no attribute {name!r}")
