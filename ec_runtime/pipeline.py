"""The inpainting pipeline: image + mask -> pad -> Canny -> edge model -> merge -> inpaint model -> crop.

:class:`Inpainter` is the public API::

    from ec_runtime import Inpainter
    painter = Inpainter.from_dir("export")            # ONNX Runtime on the CPU, or TensorRT on a GPU
    result = painter.inpaint(image_rgb_uint8, mask)   # mask: nonzero = hole

Canny runs as a model (``canny.onnx`` or its engine) on the same device as the generators. The
edge model merges its prediction with the known edges itself (``edges_out``, the training
convention); ``edge_merge="official"`` feeds the raw stage-1 map (``edges_raw``) to the inpaint
model instead, as the official test script did. The inpaint model's ``image_out`` is already
composited; the runtime pastes known pixels back in uint8 once more so they are bit-exact.

An Inpainter holds no per-call state: several threads may call one instance concurrently.
"""

from __future__ import annotations

import numbers
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ec_runtime.errors import InputError, MissingDependencyError, ModelNotFoundError, NoHoleWarning
from ec_runtime.exportdir import EXPORT_MANIFEST, KINDS, PRECISIONS, ExportDir  # noqa: F401 (re-exported)
from ec_runtime.imageio import MIN_SIDE, check_pair, empty_mask_note, hole_mask, to_rgb_uint8
from ec_runtime import strategies
from ec_runtime.runners import OrtRunner, primary_provider

BACKENDS = ("auto", "onnxruntime", "tensorrt")
EDGE_MERGES = {"training": "edges_out", "official": "edges_raw"}
GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721], np.float32)
MULTIPLE = 4


def pad_amount(n: int, multiple: int = MULTIPLE) -> int:
    return (-n) % multiple


def to_nchw(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N,H,W,3) and bool (N,H,W) -> float32 (N,3,H,W) in [0,1] and (N,1,H,W) in {0,1}."""
    image = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1 / 255)
    mask = np.ascontiguousarray(masks[:, None], dtype=np.float32)
    return image, mask


class OrtStages:
    """canny, edge and inpaint models as three ONNX Runtime sessions."""

    def __init__(self, export: ExportDir, precision: str, providers=None, threads=None, device: int = 0):
        self.variant = export.model_variant(precision, primary_provider(providers, device))
        self.runners = {k: OrtRunner(export.model_path(k, self.variant), providers, threads, device) for k in KINDS}
        for r in self.runners.values():
            r.activate()
        self.providers = self.runners["edge"].session.get_providers()
        self.timer: Callable[[str, float], None] | None = None  # timer(stage, seconds), for ec-bench

    def _timed(self, stage: str, fn, *args):
        if self.timer is None:
            return fn(*args)
        start = time.perf_counter()
        out = fn(*args)
        self.timer(stage, time.perf_counter() - start)
        return out

    def __call__(self, image, gray, mask, edges_key: str, want_edges: bool) -> dict[str, np.ndarray]:
        if self.runners["edge"].on_cuda:
            return self._on_device(image, gray, mask, edges_key, want_edges)
        canny, edge, inpaint = (self.runners[k] for k in KINDS)
        edges = self._timed("canny", canny.infer, {"gray": gray, "mask": mask})["edges"]
        stage1 = self._timed("edge", edge.infer, {"gray": gray, "edges": edges, "mask": mask})
        out = self._timed("inpaint", inpaint.infer, {"image": image, "edges": stage1[edges_key], "mask": mask})
        return {"image_out": out["image_out"], "edges": edges, **stage1}

    def _on_device(self, image, gray, mask, edges_key: str, want_edges: bool) -> dict[str, np.ndarray]:
        """ONNX Runtime on CUDA: inputs uploaded once, intermediates stay on the GPU.

        Every call here returns only when its GPU work is done (ONNX Runtime synchronises IO
        binding runs and copies), so host clocks time the H2D, per-model and D2H stages.
        """
        canny, edge, inpaint = (self.runners[k] for k in KINDS)
        gray_d, mask_d, image_d = self._timed("h2d", lambda: [edge.to_device(a) for a in (gray, mask, image)])
        edges = self._timed("canny", canny.infer_on_device, {"gray": gray_d, "mask": mask_d})["edges"]
        stage1 = self._timed("edge", edge.infer_on_device, {"gray": gray_d, "edges": edges, "mask": mask_d})
        out = self._timed("inpaint", inpaint.infer_on_device, {"image": image_d, "edges": stage1[edges_key],
                                                               "mask": mask_d})

        def download():
            result = {"image_out": out["image_out"].numpy()}
            if want_edges:
                result.update(edges=edges.numpy(), **{k: v.numpy() for k, v in stage1.items()})
            return result
        return self._timed("d2h", download)

    def close(self) -> None:
        for r in self.runners.values():
            r.deactivate()


class TrtStages:
    """canny, edge and inpaint engines chained on one GPU; intermediates never leave the device.

    Shapes are checked against the engines' profiles (from their sidecars) before any GPU work,
    and batches larger than the profiles' maximum N run in slices of that size.
    """

    def __init__(self, engines: dict[str, Path], device: int = 0, cuda_graph: bool = False):
        from ec_runtime.trt_runner import CudaDevice, TrtChain, TrtRunner, check_engine

        sidecars = [check_engine(engines[k], device, with_sidecar=True)[1] for k in KINDS]  # before the GPU
        self.max_batch = min(int(sc.profile["max"][0]) for sc in sidecars)
        dev = CudaDevice(device)
        self.runners = []
        try:
            for k in KINDS:
                self.runners.append(TrtRunner(engines[k], dev, cuda_graph).activate())
        except BaseException:
            self.close()
            raise
        self._chain = TrtChain
        self.providers = ["TensorRT"]
        self.timer: Callable[[str, float], None] | None = None  # timer(stage, seconds) from CUDA events

    def __call__(self, image, gray, mask, edges_key: str, want_edges: bool) -> dict[str, np.ndarray]:
        for runner in self.runners:
            runner.check_shapes({runner.input_names[0]: (min(len(image), self.max_batch), 1) + image.shape[2:]})
        if len(image) > self.max_batch:
            parts = [self(image[i:i + self.max_batch], gray[i:i + self.max_batch], mask[i:i + self.max_batch],
                          edges_key, want_edges) for i in range(0, len(image), self.max_batch)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        # gray and mask are uploaded once (for Canny) and reused by the later stages
        links = [{}, {"edges": (0, "edges"), "gray": (0, "gray"), "mask": (0, "mask")},
                 {"edges": (1, edges_key), "mask": (0, "mask")}]
        chain = self._chain(self.runners, links)
        fetch = [(2, "image_out")] + ([(0, "edges"), (1, "edges_out"), (1, "edges_raw")] if want_edges else [])
        return chain.run({"image": image, "gray": gray, "mask": mask}, fetch, self.timer, KINDS)

    def close(self) -> None:
        for r in self.runners:
            r.deactivate()


def _gpu_present(device: int) -> bool:
    from ec_runtime.tensorrt_support import current_gpu

    return current_gpu(device) is not None


def _trt_usable() -> bool:
    import importlib.util

    from ec_runtime.tensorrt_support import TRT_MODULES

    has_trt = any(importlib.util.find_spec(m) is not None for m in TRT_MODULES)
    return has_trt and importlib.util.find_spec("pycuda") is not None


def check_int(name: str, value, minimum: int, allow_none: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (bools and non-integral numbers refused), or InputError."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_options(edge_merge: str, strategy: str, max_side, margin) -> tuple[int, int]:
    if edge_merge not in EDGE_MERGES:
        raise InputError(f"edge_merge must be one of {', '.join(EDGE_MERGES)}, got {edge_merge!r}")
    strategies.check_strategy(strategy)
    return check_int("max_side", max_side, MIN_SIDE), check_int("margin", margin, 0)


def _try_tensorrt(export: ExportDir, engines: dict[str, Path], device: int, cuda_graph: bool):
    """TrtStages for ``backend="auto"``, or None with a warning saying why the engines are not used."""
    from ec_runtime.errors import EcRuntimeError

    try:
        if not _trt_usable():
            raise MissingDependencyError("TensorRT and pycuda are not both installed (`pip install ec-deploy[trt]`)")
        if not _gpu_present(device):
            raise EcRuntimeError(f"no CUDA GPU {device} found")
        return TrtStages(engines, device, cuda_graph)
    except EcRuntimeError as exc:  # mismatched engines, missing modules, a GPU that is not there
        warnings.warn(f"TensorRT engines in {export.root} not used, running ONNX Runtime instead: {exc}",
                      RuntimeWarning, stacklevel=3)
        return None


class Inpainter:
    """EdgeConnect inpainting on an export directory; see :meth:`from_dir`.

    ``max_side`` (an integer >= 16, as ``ec-inpaint --max-side``) is the long side above which the
    ``resize`` and ``crop`` strategies work at reduced size; ``margin`` (>= 0) is the context the
    ``crop`` strategy keeps around each hole. Invalid values raise :class:`InputError`.
    """

    def __init__(self, stages, *, backend: str, precision: str, edge_merge: str = "training",
                 strategy: str = strategies.DEFAULT_STRATEGY, max_side: int = strategies.DEFAULT_MAX_SIDE,
                 margin: int = strategies.DEFAULT_MARGIN) -> None:
        max_side, margin = _check_options(edge_merge, strategy, max_side, margin)
        self.stages = stages
        self.backend = backend
        self.precision = precision
        self.edge_merge = edge_merge
        self.strategy = strategy
        self.max_side = max_side
        self.margin = margin

    @classmethod
    def from_dir(cls, export_dir: str | os.PathLike, backend: str = "auto", precision: str = "fp32",
                 device: int = 0, providers: Sequence[str] | str | None = None, threads: int | None = None,
                 *, edge_merge: str = "training", strategy: str = strategies.DEFAULT_STRATEGY,
                 max_side: int = strategies.DEFAULT_MAX_SIDE, cuda_graph: bool = False) -> "Inpainter":
        """Load the models of ``export_dir``.

        ``backend``: ``auto`` picks TensorRT when the export directory records engines for
        ``precision`` and they fit this GPU and TensorRT version; when they do not (or TensorRT,
        pycuda or a GPU is missing) it warns and uses ONNX Runtime: with CUDA when this
        onnxruntime build has it, else on the CPU. An explicit ``tensorrt`` fails instead.
        ``providers`` overrides ONNX Runtime's providers (``"cpu"``, ``"cuda"``, ``"tensorrt"``).
        ``threads`` sets ONNX Runtime's intra-op threads (an integer >= 1, or None for its default).
        ``device`` is the GPU index (>= 0). ``strategy`` and ``max_side``: see :mod:`ec_runtime.strategies`;
        ``max_side`` must be an integer >= 16, as for ``ec-inpaint --max-side``. Every option is
        checked before any model loads; a bad one raises :class:`InputError`.
        Export directory problems raise :class:`ModelNotFoundError` or :class:`InvalidExportError`.
        """
        _check_options(edge_merge, strategy, max_side, strategies.DEFAULT_MARGIN)
        threads = check_int("threads", threads, 1, allow_none=True)
        device = check_int("device", device, 0)
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        export = ExportDir.open(export_dir)
        engines = {k: export.engine_path(k, precision) for k in KINDS}
        have_engines = all(engines.values())
        if backend == "tensorrt" and not have_engines:
            missing = [f"{k}.{precision}" for k, v in engines.items() if v is None]
            raise ModelNotFoundError(f"{export.root / EXPORT_MANIFEST} has no TensorRT engines for {missing}; "
                                     f"build them on this machine with `ec-export engine {export.root}/*.onnx` "
                                     "(no torch needed) or `ec-export CHECKPOINT... -o DIR --engine`, "
                                     "or use --backend onnxruntime")
        stages = None
        if backend == "tensorrt":
            stages, chosen = TrtStages(engines, device, cuda_graph), "tensorrt"
        elif backend == "auto" and have_engines:
            stages = _try_tensorrt(export, engines, device, cuda_graph)
            chosen = "tensorrt"
        if stages is None:
            if providers is None and backend == "auto":
                import onnxruntime as ort

                if "CUDAExecutionProvider" in ort.get_available_providers() and _gpu_present(device):
                    providers = ["cuda"]
            stages, chosen = OrtStages(export, precision, providers, threads, device), "onnxruntime"
        return cls(stages, backend=chosen, precision=precision, edge_merge=edge_merge, strategy=strategy,
                   max_side=max_side)

    @classmethod
    def from_server(cls, url: str, model: str = "edgeconnect", protocol: str | None = None, *,
                    timeout: float = 120.0, headers: dict[str, str] | None = None, retries: int = 0,
                    edge_merge: str = "training", strategy: str = strategies.DEFAULT_STRATEGY,
                    max_side: int = strategies.DEFAULT_MAX_SIDE) -> "Inpainter":
        """Run the stages on a Triton server that serves a repository written by ``ec-export triton``.

        ``url``: ``http://HOST:8000`` or ``grpc://HOST:8001`` (``protocol`` overrides the scheme).
        ``model`` is the ensemble for ``edge_merge="training"``; ``"official"`` uses
        ``<model>_official``. Padding, gray, strategies and cropping run here, as with
        :meth:`from_dir`. Needs ``pip install ec-deploy[client]``; an unreachable server, a refused
        request or a timeout raises :class:`ec_runtime.ServerError` naming the URL.
        """
        from ec_runtime.remote import TritonStages

        _check_options(edge_merge, strategy, max_side, strategies.DEFAULT_MARGIN)
        stages = TritonStages(url, model, protocol, timeout=timeout, headers=headers, retries=retries)
        return cls(stages, backend="triton", precision="server", edge_merge=edge_merge, strategy=strategy,
                   max_side=max_side)

    @property
    def model_variant(self) -> str:
        """Which files run: the precision, or ``int8_cpu`` (U8S8) for int8 on ONNX Runtime's CPU provider."""
        return getattr(self.stages, "variant", self.precision)

    @property
    def providers(self) -> list[str]:
        return list(self.stages.providers)

    def close(self) -> None:
        self.stages.close()

    def __enter__(self) -> "Inpainter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- arrays in model space ------------------------------------------------------------------
    def run(self, image: np.ndarray, mask: np.ndarray, want_edges: bool = True) -> dict[str, np.ndarray]:
        """The models on float arrays: ``image`` (N,3,H,W) in [0,1], ``mask`` (N,1,H,W), 1 = hole.

        Any H and W: the inputs are reflect-padded to multiples of 4 and the outputs cropped back.
        Returns ``image_out`` and, with ``want_edges``, ``edges`` (Canny of the known region),
        ``edges_out`` (merged) and ``edges_raw`` (stage-1 output), all (N,C,H,W) float32.
        Both inputs must be finite and within [0, 1], with matching N, H and W (>= 16); anything
        else raises :class:`InputError`.
        """
        image, mask = np.asarray(image), np.asarray(mask)
        if image.ndim != 4 or image.shape[1] != 3 or mask.ndim != 4 or mask.shape[1] != 1:
            raise InputError(f"run() takes image (N,3,H,W) and mask (N,1,H,W); got {image.shape} and {mask.shape}")
        if mask.shape[0] != image.shape[0] or mask.shape[2:] != image.shape[2:]:
            raise InputError(f"run(): mask {mask.shape} does not match image {image.shape}")
        if min(image.shape[2:]) < MIN_SIDE or image.shape[0] == 0:
            raise InputError(f"run(): image {image.shape} is empty or smaller than {MIN_SIDE} pixels")
        for name, arr in (("image", image), ("mask", mask)):
            if arr.dtype.kind not in "fiub":
                raise InputError(f"run(): {name} has unsupported type {arr.dtype}; give float32 in [0, 1]")
            lo, hi = float(arr.min()), float(arr.max())
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
                raise InputError(f"run(): {name} values must be finite and within [0, 1], got [{lo:.4g}, {hi:.4g}]")
        return self._run(image.astype(np.float32, copy=False), mask.astype(np.float32, copy=False), want_edges)

    def _run(self, image: np.ndarray, mask: np.ndarray, want_edges: bool) -> dict[str, np.ndarray]:
        h, w = image.shape[2:]
        ph, pw = pad_amount(h), pad_amount(w)
        if ph or pw:
            pad = ((0, 0), (0, 0), (0, ph), (0, pw))
            image, mask = np.pad(image, pad, mode="reflect"), np.pad(mask, pad, mode="reflect")
        gray = np.einsum("nchw,c->nhw", image, GRAY_WEIGHTS)[:, None].astype(np.float32, copy=False)
        out = self.stages(np.ascontiguousarray(image), np.ascontiguousarray(gray), np.ascontiguousarray(mask),
                          EDGE_MERGES[self.edge_merge], want_edges)
        return {k: v[:, :, :h, :w] for k, v in out.items() if want_edges or k == "image_out"}

    def _paint(self, images: np.ndarray, masks: np.ndarray, want_edges: bool):
        """uint8 (N,H,W,3), bool (N,H,W) -> uint8 (N,H,W,3) and the stage-1 edges (N,H,W) or None."""
        image, mask = to_nchw(images, masks)
        out = self._run(image, mask, want_edges)
        painted = np.rint(np.clip(out["image_out"], 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
        painted = np.where(masks[..., None], painted, images)
        edges = out[EDGE_MERGES[self.edge_merge]][:, 0] if want_edges else None
        return painted, edges

    def _paint_one(self, image: np.ndarray, mask: np.ndarray, want_edges: bool):
        painted, edges = self._paint(image[None], mask[None], want_edges)
        return painted[0], (edges[0] if edges is not None else None)

    # --- the public uint8 API -------------------------------------------------------------------
    def _prepare(self, image, mask, source: str) -> tuple[np.ndarray, np.ndarray]:
        image = to_rgb_uint8(image, source)
        holes = hole_mask(mask, source)
        check_pair(image, holes, source)
        if not holes.any():
            warnings.warn(empty_mask_note(mask, source) + "; the image is returned unchanged", NoHoleWarning,
                          stacklevel=3)
        return image, holes

    def inpaint(self, image: np.ndarray, mask: np.ndarray, return_edges: bool = False, *,
                strategy: str | None = None, inplace: bool = False):
        """Fill the holes of one image.

        ``image``: uint8 RGB (H, W, 3); gray, RGBA, uint16, bool, other integer arrays in 0..255 and
        float arrays in [0, 1] are converted. Float images must be finite and within [0, 1]: NaN,
        infinity and 0..255 float data raise :class:`InputError` (nothing is clipped silently).
        ``mask``: (H, W) (or H x W x 1..4), read by the one mask rule of
        :func:`ec_runtime.imageio.hole_mask`: above half of full scale is a hole (> 127 for uint8,
        > 0.5 for float, True for bool), and an integer 0/1 mask counts every nonzero pixel.
        Returns uint8 RGB (H, W, 3); with ``return_edges``, ``(image, edges)`` where ``edges`` is the
        float (H, W) edge map fed to the inpaint model. A mask with no hole returns a copy of the
        image without running any model and warns (:class:`~ec_runtime.errors.NoHoleWarning`).
        ``strategy`` overrides the instance's strategy. ``inplace=True`` lets the ``crop`` and
        ``resize`` strategies write the result into ``image`` itself when it is already a writable,
        C-contiguous uint8 (H, W, 3) array (the returned array is then ``image``): for very large
        images it saves an image-sized copy.
        """
        name = strategy or self.strategy
        strategies.check_strategy(name)
        given = image
        image, mask = self._prepare(image, mask, "image")
        in_place = inplace and image is given and image.flags.writeable
        if not mask.any():
            same = image if in_place else image.copy()
            return (same, np.zeros(mask.shape, np.float32)) if return_edges else same
        try:
            painted, edges = strategies.apply(name, self._paint_one, image, mask, return_edges,
                                              max_side=self.max_side, margin=self.margin,
                                              inplace=in_place)
        except MemoryError:
            h, w = mask.shape
            raise InputError(f"not enough memory to inpaint a {w}x{h} image with the {name!r} strategy "
                             f"(max_side {self.max_side}); free memory, use the crop or resize strategy with a "
                             "smaller max_side, or split the image") from None
        return (painted, edges) if return_edges else painted

    def inpaint_batch(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | np.ndarray,
                      return_edges: bool = False, *, strategy: str | None = None) -> list:
        """:meth:`inpaint` over many images; one 2-D ``masks`` array applies to all of them.

        With the ``original`` strategy, images of the same size run as one batch (instance norm
        is per image, so batching does not change results).
        """
        if isinstance(masks, np.ndarray) and masks.ndim == 2:
            masks = [masks] * len(images)
        if len(masks) != len(images):
            raise InputError(f"got {len(images)} images but {len(masks)} masks")
        name = strategy or self.strategy
        strategies.check_strategy(name)
        pairs = [self._prepare(im, m, f"image {i}") for i, (im, m) in enumerate(zip(images, masks))]
        results: list = [None] * len(pairs)
        groups: dict[tuple, list[int]] = {}
        for i, (image, mask) in enumerate(pairs):
            if not mask.any():
                results[i] = (image.copy(), np.zeros(mask.shape, np.float32))
            elif name == "original" or strategies.fits(image.shape, name, self.max_side):
                groups.setdefault(image.shape, []).append(i)
            else:
                results[i] = strategies.apply(name, self._paint_one, *pairs[i], return_edges,
                                              max_side=self.max_side, margin=self.margin)
        for idx in groups.values():
            painted, edges = self._paint(np.stack([pairs[i][0] for i in idx]), np.stack([pairs[i][1] for i in idx]),
                                         return_edges)
            for j, i in enumerate(idx):
                results[i] = (painted[j], edges[j] if edges is not None else None)
        return results if return_edges else [r[0] for r in results]

