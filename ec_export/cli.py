"""``ec-export``: checkpoints -> ONNX (FP32/FP16/INT8) and TensorRT engines.

``ec-export [OPTIONS] CHECKPOINT...`` exports (the ``export`` subcommand is implied);
``ec-export engine ONNX... --shapes MIN,OPT,MAX`` builds engines and imports no torch.
Heavy imports live inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import click

SHAPES_HELP = ("optimization profile MIN,OPT,MAX as NxHxW; the default covers what ec-inpaint sends with "
               "its defaults (16 px crops up to max-side 512, batches of 4)")
DEFAULT_SHAPES = "1x16x16,1x512x512,4x512x512"
TF32_HELP = "let TensorRT use TF32 kernels for FP32 layers (faster on Ampere and newer, can flip Canny edge pixels)"


class _DefaultToExport(click.Group):
    """A group whose first argument, when not a subcommand, goes to ``export``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            first = args[0]
            if first.isidentifier() and first.islower() and not _exists(first):  # a mistyped subcommand, e.g. "onnx"
                raise click.UsageError(f"no command or checkpoint {first!r}: the commands are "
                                       f"{', '.join(sorted(self.commands))}; to export, pass the checkpoint "
                                       "files directly: `ec-export CHECKPOINT... -o DIR`", ctx=ctx)
            args = ["export", *args]
        return super().parse_args(ctx, args)


def _exists(name: str) -> bool:
    import os

    return os.path.lexists(name)


def _user_errors():
    """The exception types whose message is shown to the user without a traceback."""
    from ec_runtime.errors import EcRuntimeError
    from ec_train.errors import EcError

    return EcError, EcRuntimeError


MAX_OPSET = 23  # the newest opset torch's ONNX exporter (torch 2.13) writes; ONNX Runtime 1.32 runs it


def _multiple_of_4(ctx, param, value):
    if value is not None and value % 4:
        raise click.BadParameter(f"must be a multiple of 4 (two stride-2 stages), got {value}")
    return value


def _finite(ctx, param, value):
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


class _Interrupted(BaseException):
    """SIGTERM or SIGINT during an export: unwinds like Ctrl-C so the staging folder is removed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> dict:
    """Make SIGTERM and SIGINT unwind the export (staging removed), also where a background shell
    started us with SIGINT ignored. Returns the previous handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        raise _Interrupted(signum)

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _shapes(text: str):
    from ec_export.engine import parse_shapes

    try:
        return parse_shapes(text)
    except _user_errors() as exc:
        raise click.BadParameter(str(exc), param_hint="--shapes") from None


@click.group(cls=_DefaultToExport, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Export EdgeConnect checkpoints to ONNX (FP32/FP16/INT8) and TensorRT engines.

    \b
    ec-export [OPTIONS] CHECKPOINT...     export (see `ec-export export --help`)
    ec-export engine ONNX... --shapes S   build TensorRT engines (no torch needed)
    ec-export triton EXPORT_DIR -o REPO   write a Triton model repository (no torch needed)
    """


@main.command("export")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", default="export", show_default=True, type=click.Path(), help="export directory")
@click.option("--fp16", is_flag=True, help="also write FP16 variants (*.fp16.onnx)")
@click.option("--int8", is_flag=True, help="also write INT8 variants: *.int8.onnx (TensorRT, S8S8 Q/DQ) and "
              "*.int8_cpu.onnx (ONNX Runtime on CPUs, U8S8)")
@click.option("--calib", type=click.Path(), default=None, help="images for INT8 calibration (default: bundled photos)")
@click.option("--calib-method", type=click.Choice(["entropy", "percentile", "minmax"]), default="entropy",
              show_default=True)
@click.option("--calib-size", type=click.IntRange(16, 4096), default=256, show_default=True, callback=_multiple_of_4,
              help="calibration image size (a multiple of 4, 16-4096)")
@click.option("--opset", type=click.IntRange(17, MAX_OPSET), default=17, show_default=True,
              help=f"ONNX opset (17-{MAX_OPSET})")
@click.option("--fused", is_flag=True, help="also write pipeline.onnx (image + mask -> image, Canny inside)")
@click.option("--sigma", type=click.FloatRange(0, 32, min_open=True), default=2.0, show_default=True, callback=_finite,
              help="Canny sigma baked into canny.onnx (0 < sigma <= 32)")
@click.option("--canny-iterations", type=click.IntRange(0, 4096), default=None,
              help="Canny hysteresis rounds, 0-4096 (default: ec_train.canny.DEFAULT_ITERATIONS)")
@click.option("--engine", "build_engines", is_flag=True, help="build a TensorRT engine for every ONNX written")
@click.option("--shapes", default=DEFAULT_SHAPES, show_default=True, help=SHAPES_HELP)
@click.option("--workspace", type=click.IntRange(1, 1 << 20), default=2048, show_default=True, help="workspace MiB")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None, help="timing cache file (loaded and saved)")
@click.option("--version-compatible", is_flag=True, help="build version-compatible engines")
@click.option("--tf32", is_flag=True, help=TF32_HELP)
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
def export_cmd(checkpoints, output, fp16, int8, calib, calib_method, calib_size, opset, fused, sigma, canny_iterations,
               build_engines,
               shapes, workspace, timing_cache, version_compatible, tf32, quiet):
    """Export CHECKPOINT(s): one training checkpoint, the official EdgeModel_gen.pth +
    InpaintingModel_gen.pth pair, or a directory holding them.

    \b
    The output folder may be new, an earlier export, or any folder of yours: only the
    export's own files (*.onnx, export.json, engines) are written or replaced there, a file
    of the same name that ec-export did not write is refused before any work, and a failed
    or interrupted export (Ctrl-C, SIGTERM) leaves the folder as it was.
    """
    import signal

    engine = None
    if calib is not None and not int8:
        raise click.BadParameter("calibration images are used only with --int8", param_hint="--calib")
    if build_engines:
        engine = {"shapes": _shapes(shapes), "workspace_mb": workspace, "timing_cache": timing_cache,
                  "version_compatible": version_compatible, "tf32": tf32}
    precisions = ("fp32",) + (("fp16",) if fp16 else ()) + (("int8",) if int8 else ())
    previous = _stop_on_signals()
    try:
        from ec_export.outdir import ExportOutput, planned_files

        ExportOutput(output, planned_files(precisions, fused, build_engines)).check()  # before torch loads
        if timing_cache is not None and build_engines:
            from ec_train.files import check_writable_file

            check_writable_file(timing_cache, "--timing-cache")
        from ec_export.exporter import export_checkpoints

        info = export_checkpoints(checkpoints, output, precisions=precisions, fused=fused, opset=opset,
                                  canny={"sigma": sigma, "iterations": canny_iterations}, calib_images=calib, calib_method=calib_method,
                                  calib_size=calib_size, engine=engine, progress=not quiet)
    except _user_errors() as exc:
        raise click.ClickException(str(exc)) from None
    except (KeyboardInterrupt, _Interrupted) as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        click.echo(f"\nec-export: interrupted ({signal.Signals(signum).name}); {output} was left as it was", err=True)
        raise SystemExit(128 + signum) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    files = [name for per in info["models"].values() for name in per.values()]
    click.echo(f"wrote {len(files)} ONNX files to {output}: {', '.join(files)}")
    for precision in ("fp16", "int8", "int8_cpu"):
        acc = info["accuracy"].get(precision)
        if acc:
            click.echo(f"  {precision} vs fp32: PSNR {acc['psnr_db']:.1f} dB, max abs diff {acc['max_abs_diff']:.2e}")
    if info.get("engines"):
        click.echo(f"  built {len(info['engines'])} TensorRT engines")


@main.command("engine")
@click.argument("onnx_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--shapes", default=DEFAULT_SHAPES, show_default=True, help=SHAPES_HELP)
@click.option("--workspace", type=click.IntRange(min=1), default=2048, show_default=True, help="workspace MiB")
@click.option("--timing-cache", type=click.Path(), default=None, help="timing cache file (loaded and saved)")
@click.option("--version-compatible", is_flag=True, help="build version-compatible engines")
@click.option("--tf32", is_flag=True, help=TF32_HELP)
@click.option("-o", "--output", type=click.Path(file_okay=False), default=None,
              help="directory for the engines (default: next to each ONNX file)")
def engine_cmd(onnx_files, shapes, workspace, timing_cache, version_compatible, tf32, output):
    """Build strongly typed TensorRT engines (X.engine + X.engine.json) from ONNX files. No torch needed.

    When an ONNX file belongs to an export directory, its engine is recorded in that directory's
    export.json, so `ec-inpaint --model DIR` and Inpainter.from_dir use it. Build on the machine
    that will run the engines (a Jetson builds its own).
    """
    from pathlib import Path

    profile = _shapes(shapes)
    try:
        from ec_export.engine import build_engine, record_engine

        for onnx_file in onnx_files:
            target = Path(output) / Path(onnx_file).with_suffix(".engine").name if output else None
            path = build_engine(onnx_file, target, shapes=profile, workspace_mb=workspace,
                                timing_cache=timing_cache, version_compatible=version_compatible, tf32=tf32)
            manifest = record_engine(onnx_file, path)
            note = f", recorded in {manifest}" if manifest else ""
            if manifest is None and (Path(onnx_file).parent / "export.json").is_file():
                note = (f"; not recorded in {Path(onnx_file).parent / 'export.json'}: engines outside the export "
                        "directory are not used by ec-inpaint (build without -o, or with -o inside it)")
            click.echo(f"built {path} (+ {path.name}.json){note}")
    except _user_errors() as exc:
        raise click.ClickException(str(exc)) from None


@main.command("triton")
@click.argument("export_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", default="triton-repo", show_default=True, type=click.Path(),
              help="model repository to write (replaced only if empty or written by ec-export triton)")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt", "python"]), default="onnxruntime",
              show_default=True, help="Triton backend of the canny/edge/inpaint models")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="which ONNX files (or engines) of the export to serve; Canny is always fp32")
@click.option("--max-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="max_batch_size; requests are merged by Triton's dynamic batcher up to this")
@click.option("--queue-delay-us", type=click.IntRange(min=0), default=1000, show_default=True,
              help="how long the dynamic batcher waits to fill a batch")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="model instances per stage (per GPU with --kind gpu)")
@click.option("--kind", type=click.Choice(["cpu", "gpu"]), default=None,
              help="instance_group kind [default: gpu for tensorrt, else cpu]")
@click.option("--ort-trt-accelerator", is_flag=True,
              help="onnxruntime on GPU: let ONNX Runtime's TensorRT accelerator run the graphs in FP16")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="python backend: ONNX Runtime intra-op threads per instance (0: one per core)")
def triton_cmd(export_dir, output, backend, precision, max_batch, queue_delay_us, instances, kind,
               ort_trt_accelerator, threads):
    """Write a Triton Inference Server model repository from EXPORT_DIR. No torch needed.

    \b
    The repository holds canny, edge and inpaint models plus the `edgeconnect` ensemble
    (image, gray, mask -> image_out, edges, edges_out, edges_raw) and `edgeconnect_official`.
    Backends: onnxruntime (CPU or GPU), tensorrt (plans from the export's engines, built with
    the TensorRT version of your Triton release), python (ec_runtime's OrtRunner; runs on a
    CPU-only Triton such as the one ec-serve starts).

    \b
    ec-export triton export -o repo --backend python && ec-serve repo
    ec-inpaint photo.jpg --mask hole.png -o out.png --server http://127.0.0.1:8000
    """
    from ec_export.errors import ExportError
    from ec_export.triton import RepoOptions, write_repository

    opts = RepoOptions(backend=backend, precision=precision, max_batch=max_batch, instances=instances, kind=kind,
                       queue_delay_us=queue_delay_us, ort_trt_accelerator=ort_trt_accelerator, threads=threads)
    try:
        info = write_repository(export_dir, output, opts)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote Triton repository {output} ({backend}, {precision}, {info['kind']}): "
               f"{', '.join(info['models'])}")
    click.echo(f"  serve it: ec-serve {output}")


if __name__ == "__main__":
    main()
