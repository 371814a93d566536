"""GPU acceptance checks around TensorRT: exports, engines, Polygraphy comparisons, the TensorRT Inpainter.

Part of ``scripts/gpu_check.py``. Engines are built with the torch-free ``ec-export engine`` (what a
Jetson user runs) with its default profile, and used through public APIs only: ``ExportDir.engine_path``,
``Inpainter.from_dir`` (``backend``, ``cuda_graph``). ``ec-export engine`` runs in this process (as
its console script would), so a test can run these checks on the GPU test double.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from pathlib import Path

from gpu_check_cuda import Context, Skip, optional_import, require

ROOT = Path(__file__).resolve().parents[1]
# Largest |ONNX Runtime - TensorRT| on [0, 1] outputs per precision (the same Q/DQ scales and casts
# run in both; TensorRT picks other kernels and accumulation orders).
TOLERANCE = {"fp32": 5e-3, "fp16": 2e-2, "int8": 1e-1}
# Least PSNR (dB) of the TensorRT Inpainter's uint8 output against ONNX Runtime's, per precision.
MIN_PSNR = {"fp32": 40.0, "fp16": 35.0, "int8": 25.0}
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def require_tensorrt():
    trt = optional_import("tensorrt")
    if trt is None:
        rtx = optional_import("tensorrt_rtx") or optional_import("tensorrt_rtx_bindings")
        hint = (" (TensorRT-RTX is installed, but the engine checks need the `tensorrt` module)" if rtx else "")
        raise Skip("TensorRT is not installed: pip install tensorrt, or JetPack's python3-libnvinfer" + hint)
    return trt


# ------------------------------------------------------------------ exports
def check_export(ctx: Context) -> dict:
    require_tensorrt()  # the exports only feed the engine checks
    if ctx.exports_given:
        return _copy_exports(ctx)
    require("torch", "torch is not installed: exporting needs pip install -e '.[export]'")
    require("onnx", "onnx is not installed: exporting needs pip install -e '.[export]'")
    from benchmarks.paper_model import write_paper_checkpoints
    from ec_export.exporter import export_checkpoints
    from ec_train.pretrained import demo_checkpoint

    precisions = ("fp32", "fp16") if ctx.quick else ("fp32", "fp16", "int8")
    exports, figures = {}, {}
    start = time.perf_counter()
    exports["demo"] = ctx.out / "export-demo"
    export_checkpoints([demo_checkpoint()], exports["demo"], precisions=precisions, progress=False)
    figures["demo s"] = round(time.perf_counter() - start, 1)
    if not ctx.quick:  # the paper's architecture (8 blocks, 64 channels), random weights, official file format
        start = time.perf_counter()
        checkpoints = ctx.out / "export-paper-checkpoints"
        write_paper_checkpoints(checkpoints, seed=0)
        exports["paper"] = ctx.out / "export-paper"
        export_checkpoints([checkpoints], exports["paper"], precisions=precisions, progress=False)
        figures["paper-size s"] = round(time.perf_counter() - start, 1)
    ctx.state["exports"] = exports
    details = []
    for name, path in exports.items():
        info = json.loads((path / "export.json").read_text())
        files = sorted({f for per in info["models"].values() for f in per.values()})
        details.append(f"- {name}: `{path}`: {', '.join(files)}")
    return {"figures": figures, "details": details}


def _copy_exports(ctx: Context) -> dict:
    """``--export DIR``: copy each given export directory (engines are written next to its ONNX files
    and into its export.json, so the user's own directory stays untouched). No torch needed."""
    import shutil

    from ec_runtime.exportdir import ExportDir

    exports, details = {}, []
    for given in ctx.exports_given:
        ExportDir.open(given)  # one clear error for a directory that is not an export
        name = Path(given).resolve().name
        while name in exports:
            name += "+"
        target = ctx.out / f"export-{name}"
        shutil.copytree(given, target, ignore=shutil.ignore_patterns("*.engine", "*.engine.json"))
        info = json.loads((target / "export.json").read_text())
        info.pop("engines", None)  # engines of another machine are rebuilt here
        (target / "export.json").write_text(json.dumps(info, indent=2) + "\n")
        exports[name] = target
        details.append(f"- {name}: copied from `{given}` to `{target}`")
    ctx.state["exports"] = exports
    return {"figures": {"exports": len(exports)}, "details": details}


def onnx_files(export_dir: Path) -> list[str]:
    """The ONNX files an export lists for Canny and the two generators, each once."""
    info = json.loads((export_dir / "export.json").read_text())
    return sorted({name for kind in ("canny", "edge", "inpaint") for name in info["models"].get(kind, {}).values()})


# ------------------------------------------------------------------ engines
def run_cli(command, args: list[str]) -> tuple[bool, str]:
    """Run a click command in this process (so it sees the same modules), as its console script would.

    Returns (succeeded, what it printed). Its one-line errors come back as text, not exceptions.
    """
    import click

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            command.main(args, standalone_mode=False)
        return True, out.getvalue()
    except click.ClickException as exc:
        return False, out.getvalue() + f"Error: {exc.format_message()}"
    except SystemExit as exc:  # click exits on --help and usage errors
        return exc.code in (0, None), out.getvalue()


def check_engines(ctx: Context) -> dict:
    trt = require_tensorrt()
    from ec_export.cli import DEFAULT_SHAPES
    from ec_export.cli import main as ec_export
    from ec_runtime.exportdir import ExportDir

    figures = {"TensorRT": trt.__version__, "profile (ec-export engine default)": DEFAULT_SHAPES}
    details = ["| export | ONNX | engine MiB | recorded in export.json |", "|---|---|---|---|"]
    failures = []
    for name, export_dir in ctx.state["exports"].items():
        files = onnx_files(export_dir)
        start = time.perf_counter()
        ok, printed = run_cli(ec_export, ["engine", *(str(export_dir / f) for f in files),
                                          "--timing-cache", str(ctx.out / "trt.timing.cache")])
        figures[f"{name} build s"] = round(time.perf_counter() - start, 1)
        if not ok:
            failures.append(f"ec-export engine failed on the {name} export: {printed.strip().splitlines()[-1:]}")
            details += ["```", *printed.strip().splitlines()[-15:], "```"]
            continue
        export = ExportDir.open(export_dir)
        for f in files:
            kind, precision = _kind_precision(f)
            engine = export_dir / f.replace(".onnx", ".engine")
            recorded = export.engine_path(kind, precision) is not None
            size = f"{engine.stat().st_size / 2**20:.1f}" if engine.is_file() else "missing"
            details.append(f"| {name} | {f} | {size} | {'yes' if recorded else 'NO'} |")
            if not recorded:
                failures.append(f"{name}/{f}: `ec-export engine` built it but export.json does not record it, "
                                "so backend='auto' would not use it")
    return {"figures": figures, "details": details, "failures": failures}


def _kind_precision(onnx_name: str) -> tuple[str, str]:
    """``edge.fp16.onnx`` -> ``("edge", "fp16")``; ``canny.onnx`` -> ``("canny", "fp32")``."""
    parts = onnx_name.split(".")
    return parts[0], parts[1] if len(parts) == 3 else "fp32"


def precisions_of(export_dir: Path, quick: bool) -> list[str]:
    """The precisions both generators were exported in (FP32 and FP16 only with --quick)."""
    from ec_runtime.exportdir import ExportDir

    wanted = ("fp32", "fp16") if quick else ("fp32", "fp16", "int8")
    return [p for p in ExportDir.open(export_dir).precisions() if p in wanted]


# ------------------------------------------------------------------ engine vs ONNX Runtime
def feeds(size: int = 256) -> dict[str, "object"]:
    """Every input the three models take, from a real photo with a hole (NCHW float32)."""
    import numpy as np

    from gpu_check_cuda import _photos

    images, holes = _photos(size, 1)
    image = images.transpose(0, 3, 1, 2).astype(np.float32) / 255
    gray = np.einsum("nchw,c->nhw", image, np.asarray(GRAY_WEIGHTS, np.float32))[:, None].astype(np.float32)
    return {"image": image, "gray": gray, "mask": holes[:, None].astype(np.float32)}


def compare_runners(reference, other, feed: dict, atol: float, binary: bool = False) -> tuple[bool, list[dict]]:
    """Run two Polygraphy runners on ``feed`` with Polygraphy's Comparator.

    Returns (passed, rows): per output the max and mean |difference| and, for a ``binary`` map (Canny),
    how many pixels flipped, which must be none.
    """
    import numpy as np
    from polygraphy import comparator

    simple = getattr(comparator, "SimpleCompareFunc", None) or comparator.CompareFunc.simple  # before 0.50
    results = comparator.Comparator.run([reference, other], data_loader=[feed])
    accuracy = comparator.Comparator.compare_accuracy(results, compare_func=simple(atol=atol, rtol=0))
    (_, ref_iters), (_, other_iters) = list(results.items())[:2]
    rows, passed = [], bool(accuracy)
    for name, want in ref_iters[0].items():
        diff = np.abs(np.asarray(other_iters[0][name], np.float64) - np.asarray(want, np.float64))
        row = {"output": name, "max_abs": float(diff.max()), "mean_abs": float(diff.mean())}
        if binary:
            row["flipped"] = int((diff > 0.5).sum())
            passed &= row["flipped"] == 0
        rows.append(row)
    return passed, rows


def _inputs_of(path: Path) -> list[str]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [i.name for i in session.get_inputs()]


def check_engines_vs_onnxruntime(ctx: Context) -> dict:
    require_tensorrt()
    require("polygraphy", "polygraphy is not installed (pip install polygraphy)")
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    base = feeds()
    details = ["| export | model | output | max abs diff | mean abs diff | flipped px | tolerance | ok |",
               "|---|---|---|---|---|---|---|---|"]
    failures, compared = [], 0
    for name, export_dir in ctx.state["exports"].items():
        canny = OnnxrtRunner(SessionFromOnnx(str(export_dir / "canny.onnx"), providers=["cpu"]))
        with canny:
            edges = canny.infer({"gray": base["gray"], "mask": base["mask"]})
        all_inputs = dict(base, edges=next(iter(edges.values())))
        for f in onnx_files(export_dir):
            precision = _kind_precision(f)[1]
            onnx_path, engine = export_dir / f, export_dir / f.replace(".onnx", ".engine")
            feed = {k: all_inputs[k] for k in _inputs_of(onnx_path)}
            is_canny = f.startswith("canny")
            ok, rows = compare_runners(OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["cpu"])),
                                       TrtRunner(EngineFromBytes(engine.read_bytes())), feed,
                                       atol=0.5 if is_canny else TOLERANCE[precision], binary=is_canny)
            compared += 1
            tol = "0 flipped" if is_canny else f"{TOLERANCE[precision]:g}"
            for r in rows:
                details.append(f"| {name} | {f} | {r['output']} | {r['max_abs']:.2e} | {r['mean_abs']:.2e} | "
                               f"{r.get('flipped', '')} | {tol} | {'yes' if ok else 'NO'} |")
            if not ok:
                failures.append(f"{name}/{f} differs from ONNX Runtime beyond {tol}")
    return {"figures": {"engines compared": compared}, "details": details, "failures": failures}


# ------------------------------------------------------------------ the Inpainter on TensorRT
def _psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def check_inpainter(ctx: Context) -> dict:
    require_tensorrt()
    require("pycuda", "pycuda is not installed: the runtime's TensorRT path needs it (pip install pycuda, "
                      "built on the device)")
    import numpy as np

    from ec_runtime.pipeline import Inpainter
    from gpu_check_cuda import _photos

    images, holes = _photos(256, 4)
    big, big_hole = _photos(1024, 1)
    small_hole = np.zeros((768, 1024), np.uint8)
    small_hole[300:360, 500:580] = 1  # one small hole in a large photo: the crop strategy sends a small box
    cases = {"256² batch 4": lambda p: np.stack(p.inpaint_batch(list(images), list(holes))),
             "odd 181x250": lambda p: p.inpaint(images[0][:181, :250], holes[0][:181, :250]),
             "crop 1024x768": lambda p: p.inpaint(big[0][:768], small_hole, strategy="crop")}
    details = ["| export | precision | case | CUDA graph | PSNR vs ORT (dB) | max abs diff | pixels off by >1 | ok |",
               "|---|---|---|---|---|---|---|---|"]
    failures = []
    for name, export_dir in ctx.state["exports"].items():
        for precision in precisions_of(export_dir, ctx.quick):
            with Inpainter.from_dir(export_dir, backend="onnxruntime", providers="cpu", precision=precision) as ort:
                want = {case: fn(ort) for case, fn in cases.items()}
            for graph in (False, True):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    trt = Inpainter.from_dir(export_dir, backend="auto", precision=precision, cuda_graph=graph)
                with trt:
                    if trt.backend != "tensorrt":
                        why = "; ".join(str(w.message) for w in caught) or "no warning given"
                        failures.append(f"{name} {precision}: backend='auto' chose {trt.backend}, not tensorrt ({why})")
                        continue
                    order = list(cases) + ([next(iter(cases))] if graph else [])  # A, B, C, A: graphs per shape
                    for case in order:
                        got = cases[case](trt)
                        diff = np.abs(got.astype(int) - want[case].astype(int))
                        psnr = _psnr(got, want[case])
                        ok = psnr >= MIN_PSNR[precision]
                        details.append(f"| {name} | {precision} | {case} | {'on' if graph else 'off'} | {psnr:.1f} | "
                                       f"{diff.max()} | {100 * float((diff > 1).mean()):.3f}% | {'yes' if ok else 'NO'} |")
                        if not ok:
                            failures.append(f"{name} {precision} {case} (graph {'on' if graph else 'off'}): "
                                            f"PSNR {psnr:.1f} dB < {MIN_PSNR[precision]}")
    return {"figures": {"cases": len(details) - 2}, "details": details, "failures": failures}


