"""What the export steps share: file names, precision gates, the export job and ONNX Runtime helpers.

:mod:`ec_export.exporter` drives an export and :mod:`ec_export.variants` implements its steps;
both import from here, and ``variants`` never imports ``exporter``, so imports run one way.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

EXPORT_FORMAT = "ec-deploy/export/v1"
PRECISIONS = ("fp32", "fp16", "int8")
# Precision int8 is written twice: ``int8`` (TensorRT's symmetric Q/DQ) and this CPU variant
# (ONNX Runtime's U8S8); export.json lists both under ``models`` and ``accuracy``.
INT8_CPU = "int8_cpu"
KINDS = ("canny", "edge", "inpaint", "pipeline")
DEFAULT_CANNY = {"sigma": 2.0, "low": 0.1, "high": 0.2, "iterations": None}
FP16_MIN_PSNR_DB = 45.0
TRACE_SIZE = 64


def file_name(kind: str, precision: str) -> str:
    """``edge`` + ``fp16`` -> ``edge.fp16.onnx``; fp32 files carry no precision suffix."""
    return f"{kind}.onnx" if precision == "fp32" else f"{kind}.{precision}.onnx"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two arrays in [0, 1] (``inf`` when they are equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def cpu_session(path: Path):
    """A quiet ONNX Runtime CPU session for ``path`` (drift measurements)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def quiet():
    """Silence onnxruntime.quantization's prints and root-logger warnings."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


class ExportJob:
    """The state of one export: staging directory, metadata, written files and measurements."""

    def __init__(self, staging: Path, opset: int, canny: dict, architecture: dict, accuracy_size: int):
        from ec_train import __version__

        self.dir, self.opset, self.canny, self.architecture = staging, opset, canny, architecture
        self.accuracy_size = accuracy_size
        self.version = __version__
        self.models: dict[str, dict[str, str]] = {}
        self.accuracy: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, str] = {}
        self.engines: dict[str, dict[str, str]] = {}
        self.sessions: dict[tuple[str, str], Any] = {}

    def metadata(self, kind: str, precision: str, io_spec: dict) -> dict[str, Any]:
        """The ``metadata_props`` of ``kind`` at ``precision``."""
        return {"ec.kind": kind, "ec.precision": precision, "ec.io": io_spec, "ec.canny": self.canny,
                "ec.toolkit_version": self.version, "ec.architecture": self.architecture}

    def path(self, kind: str, precision: str) -> Path:
        return self.dir / file_name(kind, precision)

    def record(self, kind: str, precision: str) -> Path:
        """Enter ``kind`` at ``precision`` in the ``models`` table and return its path."""
        self.models.setdefault(kind, {})[precision] = file_name(kind, precision)
        return self.path(kind, precision)

    def run(self, kind: str, precision: str, feed: dict) -> list[np.ndarray]:
        """Run ``kind`` at ``precision`` on ``feed`` (one cached CPU session per file)."""
        key = (kind, precision)
        if key not in self.sessions:
            self.sessions[key] = cpu_session(self.path(kind, precision))
        return self.sessions[key].run(None, feed)
