"""ec_train: EdgeConnect networks, checkpoints, Canny as tensor ops, losses, data and training."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("ec-deploy")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# Keep this package root torch-free: `ec-export engine` imports it on runtime-only installs.
from ec_train.errors import CheckpointError, ConfigError, DataError, EcError  # noqa: E402

__all__ = ["__version__", "EcError", "CheckpointError", "ConfigError", "DataError"]
