"""GPU acceptance checks that need CUDA but not TensorRT: environment, device, torch Canny, CUDA graphs, AMP.

Part of ``scripts/gpu_check.py``. Every check takes a :class:`Context` and returns
``{"figures": {...}, "details": [markdown lines], "failures": [...]}``, or raises :class:`Skip`.
"""

from __future__ import annotations

import importlib
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gpu_check_cudart import CudaRuntime, NoCudaRuntime, cuda_devices, optional_import

PROBED = ("numpy", "torch", "onnxruntime", "onnx", "tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings", "pycuda", "cuda.bindings", "cupy",
          "polygraphy", "cv2", "skimage", "pytest")


TRAIN_DEVICE = "cuda"  # where the AMP check trains (a test runs the check's logic on the CPU)
QUICK_SIZES = {"canny": 256, "amp": 128}  # image sizes with --quick (full: 512 and 256)


class Skip(Exception):
    """The check cannot run on this machine; the message says why."""


@dataclass
class Context:
    out: Path
    quick: bool = False
    timeout: int = 3600
    log: Callable[[str], None] = print
    exports_given: list[Path] = field(default_factory=list)  # --export: use these instead of exporting
    env: dict = field(default_factory=dict)     # filled by check_environment
    state: dict = field(default_factory=dict)   # values one check hands to the next (export dirs, ...)


def require(name: str, why: str):
    """Import ``name`` or raise :class:`Skip` with ``why`` (which should say how to install it) and the error."""
    try:
        return importlib.import_module(name)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise Skip(f"{why} [{detail}]") from None


def _version(module) -> str | None:
    for attr in ("__version__", "VERSION_TEXT", "version"):
        value = getattr(module, attr, None)
        if isinstance(value, str):
            return value
    return "installed"


# ------------------------------------------------------------------ checks
def check_environment(ctx: Context) -> dict:
    """Versions of everything the checks use; always passes (its figures are for the record)."""
    versions = {}
    for name in PROBED:
        module = optional_import(name)
        versions[name] = _version(module) if module is not None else None
    torch = optional_import("torch")
    if torch is not None:
        versions["torch"] += f" (CUDA {torch.version.cuda or 'none'})"
    ort = optional_import("onnxruntime")
    providers = ort.get_available_providers() if ort is not None else []
    devices = cuda_devices()
    smi = None
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=60)
        smi = proc.stdout.strip() or proc.stderr.strip()
    ctx.env.update(host=f"{platform.node()} ({platform.machine()}, {platform.platform()})",
                   python=sys.version.split()[0], versions={k: v for k, v in versions.items() if v},
                   device=", ".join(devices.get("names", [])) or f"none ({devices.get('why')})",
                   cuda={k: devices.get(k) for k in ("driver", "runtime", "via")}, nvidia_smi=smi,
                   onnxruntime_providers=providers)
    ctx.state["cuda"] = devices
    details = ["| package | version |", "|---|---|"] + [f"| {k} | {v or 'not installed'} |" for k, v in versions.items()]
    details += ["", f"- ONNX Runtime providers: {', '.join(providers) or 'onnxruntime not installed'}",
                f"- nvidia-smi: {smi or 'not found'}"]
    return {"figures": {"cuda_devices": devices["count"]}, "details": details}


def check_cuda_device(ctx: Context) -> dict:
    devices = ctx.state.get("cuda") or cuda_devices()
    if not devices["count"]:
        raise Skip(f"no CUDA device: {devices.get('why')}")
    return {"figures": {"devices": devices["count"], "device 0": devices["names"][0],
                        "driver": devices.get("driver"), "runtime": devices.get("runtime")}}


def _photos(size: int, count: int):
    """(uint8 RGB images, uint8 hole masks, 1 = hole).

    The photos bundled with scikit-image and ec_train's free-form masks where OpenCV and scikit-image
    are installed; otherwise numpy-drawn images and holes, so the torch checks also run on a machine
    that has little more than torch.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    try:
        from ec_train.masks import free_form_mask
        from ec_train.samples import SAMPLE_PHOTOS, sample_photo

        masks = np.stack([free_form_mask(size, size, rng, (0.1, 0.4)) for _ in range(count)])
        images = np.stack([sample_photo(SAMPLE_PHOTOS[i % len(SAMPLE_PHOTOS)], size) for i in range(count)])
        return images, masks
    except ImportError:
        pass
    y, x = np.mgrid[0:size, 0:size] / size
    images = np.empty((count, size, size, 3), np.uint8)
    masks = np.zeros((count, size, size), np.uint8)
    for i in range(count):
        img = np.stack([x, y, (x + y) / 2], -1) * 160
        for _ in range(12):  # discs and squares: plenty of edges
            cy, cx, r = rng.random(3) * [1, 1, 0.2]
            inside = ((y - cy) ** 2 + (x - cx) ** 2 < r * r) if rng.random() < 0.5 else \
                ((abs(y - cy) < r) & (abs(x - cx) < r))
            img[inside] = rng.integers(0, 256, 3)
        images[i] = img.astype(np.uint8)
        for _ in range(3):  # three rectangular holes, 10-40% of the image in all
            h, w = (rng.random(2) * 0.3 + 0.15) * size
            top, left = rng.random(2) * (size - np.array([h, w]))
            masks[i, int(top):int(top + h), int(left):int(left + w)] = 1
    return images, masks


def check_torch_canny(ctx: Context) -> dict:
    torch = require("torch", "torch is not installed (pip install torch)")
    if not torch.cuda.is_available():
        raise Skip(f"torch {torch.__version__} has no CUDA (a CPU build, or no device visible to it)")
    require("ec_train.canny", "ec_train cannot be imported (pip install -e '.[train]')")
    from ec_train.canny import Canny
    from ec_train.networks import rgb_to_gray

    size = QUICK_SIZES["canny"] if ctx.quick else 512
    images, holes = _photos(size, 4)
    image = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    gray, known = rgb_to_gray(image), torch.from_numpy(1 - holes).float()[:, None]
    canny = Canny()
    start = time.perf_counter()
    cpu = canny(gray, known)
    cpu_ms = 1e3 * (time.perf_counter() - start)
    gpu_canny, g, k = canny.cuda(), gray.cuda(), known.cuda()
    gpu_canny(g, k)
    torch.cuda.synchronize()
    start = time.perf_counter()
    cuda = gpu_canny(g, k)
    torch.cuda.synchronize()
    cuda_ms = 1e3 * (time.perf_counter() - start)
    agree = float((cuda.cpu() == cpu).float().mean())
    # cuDNN may run the smoothing convolutions in TF32 on Ampere and newer (torch's default); measure both.
    saved = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = False
        agree_fp32 = float((gpu_canny(g, k).cpu() == cpu).float().mean())
    finally:
        torch.backends.cudnn.allow_tf32 = saved
    figures = {"pixels agreeing": f"{100 * agree:.4f}%", "pixels agreeing, TF32 off": f"{100 * agree_fp32:.4f}%",
               "edge pixels (CPU)": int(cpu.sum()),
               f"CPU ms (4x{size}²)": round(cpu_ms, 1), f"CUDA ms (4x{size}²)": round(cuda_ms, 2)}
    failures = [] if agree >= 0.999 else [f"only {100 * agree:.3f}% of edge-map pixels agree (need 99.9%)"]
    return {"figures": figures, "failures": failures}


def _graph_ops():
    """``(capture(stream, work) -> executable, launch(executable, stream), destroy(executable), name)``
    from ``ec_runtime.cuda_graphs``, the module TrtRunner captures its graphs with."""
    require("ec_runtime.cuda_graphs", "ec_runtime cannot be imported (run from the repository, or pip install -e .)")
    from ec_runtime import cuda_graphs
    from ec_runtime.errors import MissingDependencyError

    try:
        api = cuda_graphs.graph_api()
    except MissingDependencyError as exc:
        raise Skip(str(exc)) from None
    return (lambda stream, work: cuda_graphs.capture(api, stream, work), api.launch, api.destroy,
            f"ec_runtime.cuda_graphs ({api.name})")


def check_cuda_graph(ctx: Context) -> dict:
    """Capture a memset + device copy on a fresh stream, replay it, and check what the replays wrote."""
    np = require("numpy", "numpy is not installed")
    try:
        rt = CudaRuntime()
    except NoCudaRuntime as exc:
        raise Skip(str(exc)) from None
    capture, launch, destroy, how = _graph_ops()
    rt.set_device(0)
    n = 1 << 20
    nbytes = 4 * n
    stream, src, dst = rt.stream(), rt.malloc(nbytes), rt.malloc(nbytes)
    failures, figures, exe = [], {"graph API": how, "memory API": rt.via}, None
    try:
        def work():
            rt.memset_async(dst, 0, nbytes, stream)
            rt.memcpy_async(dst, src, nbytes, 3, stream)

        exe = capture(stream, work)
        if rt.capturing(stream):
            failures.append("the stream is still capturing after the capture ended")
        host = np.empty(n, np.float32)
        for round_ in (2.0, 3.0):  # the graph copies whatever src holds when it is replayed
            data = np.arange(n, dtype=np.float32) * round_
            rt.memcpy(src, data.ctypes.data, nbytes, 1)
            launch(exe, stream)
            rt.synchronize(stream)
            rt.memcpy(host.ctypes.data, dst, nbytes, 2)
            if not np.array_equal(host, data):
                failures.append(f"replay {int(round_) - 1} did not copy the current input")
        reps = 20 if ctx.quick else 200
        timings = {}
        for name, step in (("graph", lambda: launch(exe, stream)), ("eager", work)):
            step()
            rt.synchronize(stream)
            start = time.perf_counter()
            for _ in range(reps):
                step()
            rt.synchronize(stream)
            timings[name] = 1e6 * (time.perf_counter() - start) / reps
        figures.update({"graph launch µs": round(timings["graph"], 1), "eager µs": round(timings["eager"], 1)})

        class Boom(Exception):
            pass

        def failing_work():
            rt.memset_async(dst, 0, nbytes, stream)
            raise Boom("work failed during capture")

        try:  # a capture whose work fails must not leave the stream capturing
            capture(stream, failing_work)
        except Boom:
            pass
        if rt.capturing(stream):
            failures.append("a failed capture left the stream in capture mode")
        else:
            rt.memset_async(dst, 0, nbytes, stream)  # the stream still runs eager work
            rt.synchronize(stream)
        figures["failed capture leaves the stream usable"] = not rt.capturing(stream)
    finally:
        if exe is not None:
            destroy(exe)
        rt.free(src)
        rt.free(dst)
        rt.destroy_stream(stream)
    return {"figures": figures, "failures": failures}


def amp_modes(torch) -> list[str]:
    """The autocast types to train with: fp16 (with a gradient scaler), and bf16 where the GPU has it."""
    return ["fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])


def check_amp_train_step(ctx: Context) -> dict:
    """Three joint-mode training steps of the paper-size networks (lite with --quick) under fp16 and bf16 autocast."""
    torch = require("torch", "torch is not installed (pip install torch)")
    if not torch.cuda.is_available():
        raise Skip(f"torch {torch.__version__} has no CUDA")
    require("ec_train.trainer", "ec_train cannot be imported (pip install -e '.[train]')")
    from ec_train.config import TrainConfig
    from ec_train.trainer import IG, Trainer

    size = QUICK_SIZES["amp"] if ctx.quick else 256
    images, holes = _photos(size, 2)
    batch = {"image": torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255,
             "mask": torch.from_numpy(holes).float()[:, None]}
    figures, failures = {}, []
    modes = amp_modes(torch)
    for amp in modes:
        cfg = TrainConfig(mode="joint", variant="lite" if ctx.quick else "edgeconnect", amp=amp, batch=2, size=size)
        trainer = Trainer(cfg, torch.device(TRAIN_DEVICE))
        before = {k: v.detach().clone() for k, v in trainer.models[IG].state_dict().items()}
        times = []
        for _ in range(3):
            torch.cuda.synchronize()
            start = time.perf_counter()
            logs, _ = trainer.train_step(batch)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        changed = any(not torch.equal(before[k], v) for k, v in trainer.models[IG].state_dict().items()
                      if v.dtype.is_floating_point)
        if not changed:
            failures.append(f"{amp}: three steps left the inpaint generator's weights unchanged")
        figures[f"{amp} ms/step"] = round(1e3 * min(times[1:]), 1)
        figures[f"{amp} losses"] = ", ".join(f"{k} {v:.3g}" for k, v in logs.items() if k in ("e_adv", "i_l1"))
        if amp == "fp16":
            figures["fp16 loss scale"] = float(trainer.scaler.get_scale())
    if "bf16" not in modes:
        figures["bf16"] = "skipped: this GPU has no bf16"
    return {"figures": figures, "failures": failures}
