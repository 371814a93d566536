"""The exception root of ``ec_runtime`` (which must not import ec_train, so it has its own)."""


class EcRuntimeError(Exception):
    """Base class of every error ec_runtime raises with a message a user can act on."""


class MissingDependencyError(EcRuntimeError, ImportError):
    """An optional backend is not installed; the message names the extra to install."""


class ModelNotFoundError(EcRuntimeError, FileNotFoundError):
    """An export directory, ONNX file or engine file does not exist."""


class InvalidExportError(EcRuntimeError, ValueError):
    """An export directory exists but its ``export.json`` or a model file is unreadable or malformed."""


class EngineMismatchError(EcRuntimeError):
    """A TensorRT engine was built for another TensorRT version, GPU or ONNX file."""


class InputError(EcRuntimeError, ValueError):
    """An image or mask cannot be inpainted as given (size, type, content)."""


class OutputError(EcRuntimeError, OSError):
    """An output cannot be written (unwritable location, existing file without overwrite, disk full)."""


class NoHoleWarning(UserWarning):
    """A mask marks no hole, so the image is returned unchanged."""


class ServerError(EcRuntimeError):
    """A Triton server could not be reached, refused a request or timed out; the message names its URL."""
