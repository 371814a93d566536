"""Building TensorRT engines from our ONNX files. Imports no torch and no onnx.

This is what ``ec-export engine`` runs, so engines can be built on a Jetson (or any box) that has
only TensorRT and the runtime installed. It follows the TensorRT 10.x/11.x builder API, which
TensorRT-RTX (``tensorrt_rtx_bindings``) shares:

* the network is created ``STRONGLY_TYPED``: precision comes from the ONNX file (Casts for FP16,
  Q/DQ for INT8), never from builder flags, which TensorRT 11 removed;
* one optimization profile sets every input to ``(N, C, H, W)`` with C taken from the network;
* a workspace limit and a timing cache that is loaded before and saved after the build;
* ``VERSION_COMPATIBLE`` on request;
* a JSON sidecar (:class:`ec_runtime.tensorrt_support.EngineSidecar`) next to the engine.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

from ec_export.errors import ExportError
from ec_runtime.tensorrt_support import EngineSidecar, current_gpu, import_tensorrt, sha256_file, trt_module_name

Shape = tuple[int, int, int]  # N, H, W
PRECISIONS = ("fp32", "fp16", "int8")
# What the runtime sends with its defaults: images and crop boxes from 16 px (the input minimum;
# crops are grown to 32 px), long sides up to max_side 512 after padding to x4, and batches of up
# to 4 (inpaint_batch and ec-bench split larger batches to the profile's maximum N).
DEFAULT_SHAPES: tuple[Shape, Shape, Shape] = ((1, 16, 16), (1, 512, 512), (4, 512, 512))
DEFAULT_WORKSPACE_MB = 2048


def parse_shape(text: str) -> Shape:
    """``"1x512x512"`` -> ``(1, 512, 512)`` (N x H x W)."""
    parts = text.lower().strip().split("x")
    try:
        n, h, w = (int(p) for p in parts)
    except ValueError:
        raise ExportError(f"bad shape {text!r}: expected NxHxW, e.g. 1x512x512") from None
    return n, h, w


def parse_shapes(text: str) -> tuple[Shape, Shape, Shape]:
    """``"1x256x256,1x512x512,4x1024x1024"`` -> validated (min, opt, max)."""
    items = [s for s in text.split(",") if s.strip()]
    if len(items) != 3:
        raise ExportError(f"bad --shapes {text!r}: expected MIN,OPT,MAX, e.g. 1x256x256,1x512x512,4x1024x1024")
    shapes = tuple(parse_shape(s) for s in items)
    validate_shapes(shapes)
    return shapes  # type: ignore[return-value]


def validate_shapes(shapes: Sequence[Shape]) -> None:
    """Raise :class:`ExportError` unless min <= opt <= max, all positive, H and W multiples of 4."""
    if len(shapes) != 3:
        raise ExportError(f"an optimization profile needs 3 shapes (min, opt, max), got {len(shapes)}")
    for shape in shapes:
        n, h, w = shape
        if min(shape) <= 0:
            raise ExportError(f"shape {n}x{h}x{w} must be positive")
        if h % 4 or w % 4:
            raise ExportError(f"shape {n}x{h}x{w}: height and width must be multiples of 4 (the generators "
                              f"downsample twice by 2); try {n}x{(h + 3) // 4 * 4}x{(w + 3) // 4 * 4}")
    lo, opt, hi = shapes
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise ExportError(f"shapes must satisfy min <= opt <= max in every dimension, got "
                          f"{' , '.join('x'.join(map(str, s)) for s in shapes)}")


def precision_from_name(path: str | Path) -> str:
    """``edge.fp16.onnx`` -> ``fp16``, ``edge.int8.onnx`` -> ``int8``, anything else -> ``fp32``."""
    suffixes = Path(path).suffixes
    for precision in ("fp16", "int8"):
        if f".{precision}" in suffixes:
            return precision
    return "fp32"


def _parser_errors(parser) -> str:
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node, index = _call(err, "node_name"), _call(err, "node")
        op = _call(err, "node_operator")
        if node or (isinstance(index, int) and index >= 0):
            where = f"node {node or f'#{index}'}" + (f" ({op})" if op else "")
        else:
            where = "model"
        lines.append(f"  {where}: {_call(err, 'desc')}")
    return "\n".join(lines)


def _call(obj, name: str):
    """``obj.name()`` where it exists (ParserError accessors differ slightly across versions)."""
    attr = getattr(obj, name, None)
    if attr is None:
        return None
    try:
        return attr() if callable(attr) else attr
    except Exception:
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Logger:
    """A TensorRT logger that keeps errors so they can be reported in the exception."""

    def __init__(self, trt):
        base = trt.ILogger
        outer = self

        class Logger(base):  # type: ignore[misc, valid-type]
            def __init__(self):
                base.__init__(self)

            def log(self, severity, msg):
                if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                    outer.errors.append(str(msg))

        self.errors: list[str] = []
        self.trt_logger = Logger()


def build_engine(onnx_path: str | Path, engine_path: str | Path | None = None, *,
                 shapes: Sequence[Shape] = DEFAULT_SHAPES, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                 timing_cache: str | Path | None = None, version_compatible: bool = False,
                 precision: str | None = None, trt_module=None, tf32: bool = False) -> Path:
    """Parse ``onnx_path``, build a strongly typed engine and write it with its sidecar.

    ``shapes`` is (min, opt, max) as (N, H, W); every network input gets ``(N, C, H, W)``.
    ``engine_path`` defaults to the ONNX path with ``.engine`` (``edge.fp16.onnx`` ->
    ``edge.fp16.engine``). ``precision`` defaults to the one named in the file name.
    ``trt_module`` is an imported TensorRT module (default: :func:`import_tensorrt`).
    ``tf32``: TensorRT enables TF32 kernels for FP32 layers by default on Ampere and newer (Orin,
    H100), which can flip Canny's thresholded edge pixels; the flag is cleared unless this is
    True, and the sidecar records the choice.
    Returns the engine path. Raises :class:`ExportError` with the parser's messages (and node
    names) when the ONNX file cannot be parsed, and when the build fails.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ExportError(f"ONNX file not found: {onnx_path}")
    validate_shapes(shapes)
    if workspace_mb <= 0:
        raise ExportError(f"workspace must be positive, got {workspace_mb} MiB")
    precision = precision or precision_from_name(onnx_path)
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    engine_path = Path(engine_path) if engine_path else onnx_path.with_suffix(".engine")
    trt = trt_module if trt_module is not None else import_tensorrt()

    logger = _Logger(trt)
    builder = trt.Builder(logger.trt_logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger.trt_logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)) or parser.num_errors:
        details = _parser_errors(parser) or "\n".join(f"  {e}" for e in logger.errors) or "  (no details)"
        raise ExportError(f"TensorRT ({trt_module_name(trt)} {trt.__version__}) could not parse {onnx_path}:\n{details}")
    if network.num_inputs == 0 or network.num_outputs == 0:
        raise ExportError(f"TensorRT ({trt_module_name(trt)} {trt.__version__}) could not parse {onnx_path}: "
                          f"it holds no graph with inputs and outputs (is it an ONNX file?)")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    tf32_flag = getattr(trt.BuilderFlag, "TF32", None)
    if tf32_flag is not None:
        (config.set_flag if tf32 else config.clear_flag)(tf32_flag)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        channels = int(tensor.shape[1])
        if channels <= 0:
            raise ExportError(f"input {tensor.name!r} of {onnx_path} has a dynamic channel dimension")
        lo, opt, hi = ((n, channels, h, w) for n, h, w in shapes)
        profile.set_shape(tensor.name, lo, opt, hi)
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None:
        cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TensorRT-RTX: timing cache calls are no-ops
            cache = config.create_timing_cache(cache_bytes)
            config.set_timing_cache(cache, True)  # ignore_mismatch: a cache from another device is just unused

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        details = "\n".join(f"  {e}" for e in logger.errors) or "  (no details)"
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path}:\n{details}")

    engine_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(engine_path, bytes(memoryview(serialized)))
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            _atomic_write(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))

    gpu = current_gpu()
    EngineSidecar(
        tensorrt_module=trt_module_name(trt), tensorrt_version=str(trt.__version__), precision=precision,
        profile={name: list(s) for name, s in zip(("min", "opt", "max"), shapes)},
        onnx_file=onnx_path.name, onnx_sha256=sha256_file(onnx_path), engine_sha256=sha256_file(engine_path),
        gpu_name=gpu.name if gpu else None, compute_capability=gpu.compute_capability if gpu else None,
        version_compatible=version_compatible, tf32=bool(tf32 and tf32_flag is not None),
    ).write(engine_path)
    return engine_path


def record_engine(onnx_path: str | Path, engine_path: str | Path) -> Path | None:
    """Enter ``engine_path`` in the ``export.json`` of the export directory holding ``onnx_path``.

    The ONNX file must be listed in that manifest's ``models`` (as ``kind`` at ``precision``);
    the engine is then recorded under ``engines["<kind>.<precision>"]`` with a path relative to
    the export directory, so ``Inpainter.from_dir`` finds it. Returns the manifest path, or None
    when the ONNX file is not part of an export directory or the engine lies outside it (the
    runtime follows no manifest path out of its directory). The manifest is replaced atomically.
    """
    import json

    onnx_path, engine_path = Path(onnx_path).resolve(), Path(engine_path).resolve()
    root = onnx_path.parent
    manifest_path = root / "export.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{manifest_path} is not a readable export manifest: {exc}") from exc
    if root not in engine_path.parents:  # the runtime only follows paths inside the export directory
        return None
    for kind, per in (manifest.get("models") or {}).items():
        for precision, name in per.items():
            if (root / name).resolve() == onnx_path:
                rel = Path(os.path.relpath(engine_path, root)).as_posix()
                manifest.setdefault("engines", {})[f"{kind}.{precision}"] = {"engine": rel, "sidecar": rel + ".json"}
                from ec_train.files import strict_json

                _atomic_write(manifest_path, (strict_json(manifest, indent=2) + "\n").encode())
                return manifest_path
    return None
