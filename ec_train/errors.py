"""The exception root of ``ec_train``: every error a user can act on derives from :class:`EcError`."""


class EcError(Exception):
    """Base class of every error raised by ec_train (and ec_export, which builds on it)."""


class CheckpointError(EcError):
    """A checkpoint file is missing, unreadable, of the wrong kind, or does not fit the model."""


class ConfigError(EcError):
    """A configuration value or command-line option is invalid."""


class DataError(EcError):
    """Training or validation data is missing or unusable."""


class TrainingError(EcError):
    """Training cannot go on (e.g. a loss became NaN or infinite)."""


class OutputError(EcError):
    """An output file or folder cannot be written (read-only, under a file, a folder in the way)."""
