"""Errors of ``ec_export``, rooted in :class:`ec_train.errors.EcError`.

``ec_train/__init__`` and ``ec_train.errors`` import no torch, so this module (and
``ec-export engine``) still works on a machine with only the runtime and TensorRT installed.
"""

from ec_train.errors import EcError


class ExportError(EcError):
    """An export, conversion, quantization or engine build failed in a way the user can fix."""
