"""``ec-bench`` and ``ec-eval``: latency, throughput, memory and quality of an export directory.

Both commands check everything they can before measuring (options, the export directory, the
precisions it holds, that the report files can be written) and turn every user error into one
``Error:`` line with a non-zero exit.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

import click

MAX_BENCH_SIZE = 8192
MAX_BENCH_BATCH = 256
MAX_EVAL_SIZE = 4096


def _csv(kind, choices=None, low=None, high=None, multiple=None):
    """A comma-separated option of ``kind`` values, each in ``choices`` or in [low, high] and a multiple."""
    def convert(ctx, param, value):
        items = [v.strip() for v in value.split(",") if v.strip()]
        try:
            items = [kind(v) for v in items]
        except ValueError:
            raise click.BadParameter(f"expected a comma-separated list of {kind.__name__}s, got {value!r}") from None
        if not items:
            raise click.BadParameter("empty list")
        bad = [v for v in items if choices and v not in choices]
        if bad:
            raise click.BadParameter(f"{', '.join(map(str, bad))}: choose from {', '.join(map(str, choices))}")
        bad = [v for v in items if (low is not None and v < low) or (high is not None and v > high)
               or (multiple and v % multiple)]
        if bad:
            rule = f"between {low} and {high}" + (f" and multiples of {multiple}" if multiple else "")
            raise click.BadParameter(f"values must be {rule}, got {', '.join(map(str, bad))}")
        return tuple(dict.fromkeys(items))
    return convert


def _user_errors():
    from ec_runtime.errors import EcRuntimeError
    from ec_train.errors import EcError

    return EcError, EcRuntimeError


def _writable(targets: dict[str, Path | None]) -> None:
    """Refuse report paths that cannot be written, before any measuring."""
    from ec_train.files import check_writable_file

    for option, path in targets.items():
        if path is not None:
            try:
                check_writable_file(path, option)
            except _user_errors() as exc:
                raise click.BadParameter(str(exc), param_hint=option) from None


def _open(export_dir: Path, precisions) -> dict:
    """The validated manifest; precisions the user named must exist, defaults adapt to the export."""
    from click.core import ParameterSource

    from benchmarks.exports import open_export

    ctx = click.get_current_context()
    explicit = ctx.get_parameter_source("precisions") != ParameterSource.DEFAULT
    try:
        return open_export(export_dir, precisions, required=explicit)
    except _user_errors() as exc:
        raise click.ClickException(str(exc)) from None


def _export_default_model(workdir: Path, precisions) -> Path:
    from ec_export.exporter import export_checkpoints
    from ec_train.pretrained import demo_checkpoint

    out = workdir / "export"
    try:
        click.echo(f"no EXPORT_DIR given: exporting the default model ({demo_checkpoint().name}) to {out}")
        export_checkpoints([demo_checkpoint()], out, precisions=tuple(precisions), progress=True)
    except Exception as exc:
        raise click.ClickException(f"cannot export the default model: {exc}") from None
    return out


def _write(write, *args, path: Path) -> None:
    """``write(*args)``; a failure to write ``path`` becomes one error line."""
    try:
        write(*args)
    except _user_errors() as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("export_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--backends", default="torch,onnxruntime,tensorrt", show_default=True,
              callback=_csv(str, ("torch", "onnxruntime", "tensorrt")), help="comma-separated backends")
@click.option("--precisions", default="fp32,fp16,int8", show_default=True,
              callback=_csv(str, ("fp32", "fp16", "int8")), help="comma-separated precisions (not for torch)")
@click.option("--sizes", default="256,512", show_default=True, callback=_csv(int, low=16, high=MAX_BENCH_SIZE, multiple=4),
              help=f"square image sizes (multiples of 4, 16-{MAX_BENCH_SIZE})")
@click.option("--batch", "batches", default="1,4", show_default=True, callback=_csv(int, low=1, high=MAX_BENCH_BATCH),
              help=f"batch sizes (1-{MAX_BENCH_BATCH})")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=1), help="warm-up calls per case")
@click.option("--iters", default=6, show_default=True, type=click.IntRange(min=1), help="timed calls per case")
@click.option("--threads", default=None, type=click.IntRange(1, 1024), help="intra-op threads, 1-1024 (default: all cores)")
@click.option("--cuda-graph", is_flag=True, help="TensorRT rows capture a CUDA graph per shape and replay it")
@click.option("--with", "more_exports", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="another export directory timed in the same interleaved run, each against its own torch "
                   "baseline (repeatable; e.g. a paper-size model beside the demo one)")
@click.option("--json", "json_path", default="ec-bench/report.json", show_default=True, type=click.Path(path_type=Path))
@click.option("--markdown", "md_path", default="ec-bench/report.md", show_default=True, type=click.Path(path_type=Path))
@click.option("--plot", "plot_path", default="ec-bench/report.png", show_default=True, type=click.Path(path_type=Path),
              help="PNG chart (needs matplotlib)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
def main(export_dir, backends, precisions, sizes, batches, warmup, iters, threads, cuda_graph, more_exports, json_path,
         md_path, plot_path, quiet):
    """Benchmark an EXPORT_DIR (from `ec-export`) against the eager-PyTorch baseline.

    \b
    Every row reports end-to-end latency (mean, p50, p90, p99, min) per call, throughput,
    a per-stage breakdown, peak RSS, PSNR against the torch baseline and its speed-up over it,
    measured interleaved in the same run. Unavailable combinations (TensorRT without a GPU)
    are listed as skipped with the reason; so is the torch baseline when the export's source
    checkpoint is gone. Precisions the export lacks are refused before any work.

    \b
    Examples:
      ec-bench                                  # default model, exported to a temp dir first
      ec-bench export/ --sizes 512 --batch 1 --iters 20
      ec-bench export/ --backends onnxruntime --precisions fp32,int8 --threads 2
      ec-bench export/ --backends tensorrt --cuda-graph   # engines built with `ec-export engine`
      ec-bench demo-export/ --with paper-export/ --precisions fp32,int8   # two models, one run
    """
    _writable({"--json": json_path, "--markdown": md_path, "--plot": plot_path})
    runtime = [b for b in backends if b != "torch"]
    if export_dir is not None:
        info = _open(export_dir, precisions if runtime else ("fp32",))
        if "torch" in backends:
            from benchmarks.exports import baseline_problem

            problem = baseline_problem(info)
            if problem and not runtime:
                raise click.ClickException(f"no torch baseline: {problem}")
            if problem:
                click.echo(f"warning: no torch baseline (speed-up and PSNR columns stay empty): {problem}", err=True)
    if more_exports and export_dir is None:
        raise click.UsageError("--with needs an EXPORT_DIR to compare with")
    for extra in more_exports:
        _open(extra, ("fp32",))
    with tempfile.TemporaryDirectory(prefix="ec-bench-") as tmp:
        from benchmarks.bench import BenchConfig, run_bench

        export_dir = export_dir or _export_default_model(Path(tmp), precisions)
        cfg = BenchConfig(export_dir=export_dir, backends=backends, precisions=precisions, sizes=sizes,
                          batches=batches, warmup=warmup, iters=iters, threads=threads,
                          cuda_graph=cuda_graph, more_exports=tuple(more_exports))
        try:
            result = run_bench(cfg, progress=not quiet)
        except _user_errors() as exc:
            raise click.ClickException(str(exc)) from None
    from benchmarks.environment import environment
    from benchmarks.report import markdown_table, write_json, write_markdown, write_plot

    result["environment"] = environment()
    result["command"] = "ec-bench " + shlex.join(sys.argv[1:])
    if not result["rows"]:
        raise click.ClickException("nothing could be benchmarked: " +
                                   "; ".join(f"{s['backend']} {s['precision']}: {s['reason']}" for s in result["skipped"]))
    _write(write_json, result, json_path, path=json_path)
    _write(write_markdown, result, md_path, path=md_path)
    try:
        plot = write_plot(result, plot_path)
    except (OSError, *_user_errors()) as exc:
        raise click.ClickException(f"cannot write --plot {plot_path}: {exc}") from None
    click.echo(markdown_table(result["rows"]))
    for s in result["skipped"]:
        name = "torch baseline" if s["backend"] == "torch" else f"{s['backend']} {s['precision']}"
        click.echo(f"skipped {name}: {s['reason']}")
    click.echo(f"wrote {json_path}, {md_path}" + (f", {plot}" if plot else " (no plot: matplotlib is not installed)"))


@click.command("ec-eval", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("export_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="held-out photos (default: the bundled astronaut, coffee, chelsea and rocket)")
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, MAX_EVAL_SIZE),
              help="evaluation size (square)")
@click.option("--masks-per-bin", default=3, show_default=True, type=click.IntRange(1, 1000),
              help="free-form holes per image in each hole-ratio bin (10-20, 20-30, 30-40, 40-50%)")
@click.option("--precisions", default="fp32,fp16,int8", show_default=True, callback=_csv(str, ("fp32", "fp16", "int8")))
@click.option("--threads", default=None, type=click.IntRange(1, 1024), help="intra-op threads, 1-1024 (default: all cores)")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--json", "json_path", default="ec-eval/quality.json", show_default=True, type=click.Path(path_type=Path))
@click.option("--markdown", "md_path", default="ec-eval/quality.md", show_default=True, type=click.Path(path_type=Path))
@click.option("-q", "--quiet", is_flag=True)
def eval_main(export_dir, images, size, masks_per_bin, precisions, threads, seed, json_path, md_path, quiet):
    """Quality of EXPORT_DIR's model vs cv2.inpaint (TELEA, NS) on held-out photos.

    \b
    PSNR, SSIM (Gaussian window) and L1 of the merged image, per hole ratio, for the model in
    each precision and for OpenCV's two classical inpainting methods.
    """
    _writable({"--json": json_path, "--markdown": md_path})
    info = _open(export_dir, precisions) if export_dir is not None else None
    from benchmarks.quality import load_images

    try:
        photos = load_images(images, size)
    except (OSError, *_user_errors()) as exc:
        raise click.BadParameter(str(exc).splitlines()[0], param_hint="--images") from None
    with tempfile.TemporaryDirectory(prefix="ec-eval-") as tmp:
        if export_dir is None:
            export_dir = _export_default_model(Path(tmp), precisions)
            info = _open(export_dir, precisions)
        from benchmarks.exports import available_precisions

        have = available_precisions(info)
        skipped = [p for p in precisions if p not in have]
        if skipped:
            click.echo(f"note: {export_dir} has no {', '.join(skipped)} models; evaluating "
                       f"{', '.join(p for p in precisions if p in have)} (add them with `ec-export CHECKPOINT -o DIR"
                       + "".join(f" --{p}" for p in skipped) + "`)", err=True)
        precisions = tuple(p for p in precisions if p in have)
        rows, n_cases = _evaluate(export_dir, photos, precisions, threads, masks_per_bin, seed, quiet)
    from benchmarks.environment import environment, environment_markdown
    from benchmarks.quality import quality_markdown
    from ec_train.files import strict_json, write_atomic

    env = environment()
    command = "ec-eval " + shlex.join(sys.argv[1:])
    table = quality_markdown(rows)
    report = {"environment": env, "command": command, "size": size, "model": info.get("source", {}), "rows": rows}
    _write(write_atomic, json_path, strict_json(report, indent=2) + "\n", "--json", path=json_path)
    _write(write_atomic, md_path, f"# ec-eval: quality on held-out photos\n\n{environment_markdown(env)}\n- command: "
                         f"`{command}`\n- {n_cases} cases per method ({size}², merged images; L1 in % of full scale)"
                         f"\n\n{table}\n", "--markdown", path=md_path)
    click.echo(table)
    click.echo(f"wrote {json_path}, {md_path}")


def _evaluate(export_dir, photos, precisions, threads, masks_per_bin, seed, quiet):
    """Run every method on every case; returns (rows, number of cases)."""
    from benchmarks.quality import eval_cases, evaluate, opencv_method
    from ec_runtime.pipeline import Inpainter

    methods, closers = {}, []
    try:
        for p in precisions:
            try:
                inp = Inpainter.from_dir(export_dir, backend="onnxruntime", precision=p, threads=threads,
                                         strategy="original")
            except _user_errors() as exc:
                raise click.ClickException(f"cannot load the {p} models of {export_dir}: "
                                           f"{str(exc).splitlines()[0]}") from None
            closers.append(inp.close)
            methods[f"ours {p}"] = inp.inpaint
        methods["cv2 TELEA"] = opencv_method(cv2_flag("TELEA"))
        methods["cv2 NS"] = opencv_method(cv2_flag("NS"))
        cases = eval_cases(photos, masks_per_bin, seed)
        try:
            return evaluate(methods, cases, progress=not quiet), len(cases)
        except _user_errors() as exc:
            raise click.ClickException(str(exc).splitlines()[0]) from None
    finally:
        for close in closers:
            close()


def cv2_flag(name: str) -> int:
    import cv2

    return {"TELEA": cv2.INPAINT_TELEA, "NS": cv2.INPAINT_NS}[name]


if __name__ == "__main__":
    main()
