"""ec_export: ONNX export (FP32/FP16/INT8) of EdgeConnect and TensorRT engine builds.

Importing this package does not import torch; the torch-dependent modules are imported by the
functions and commands that need them, so ``ec-export engine`` runs where only TensorRT is installed.
"""

from ec_export.errors import ExportError

__all__ = ["ExportError"]
