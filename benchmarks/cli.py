"""``ec-bench``: latency, throughput, memory and accuracy across backends, precisions and sizes."""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

import click


def _csv(kind, choices=None):
    def convert(ctx, param, value):
        items = [v.strip() for v in value.split(",") if v.strip()]
        try:
            items = [kind(v) for v in items]
        except ValueError:
            raise click.BadParameter(f"expected a comma-separated list of {kind.__name__}s, got {value!r}") from None
        bad = [v for v in items if choices and v not in choices]
        if bad or not items:
            raise click.BadParameter(f"choose from {', '.join(map(str, choices))}" if bad else "empty list")
        return tuple(items)
    return convert


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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("export_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--backends", default="torch,onnxruntime,tensorrt", show_default=True,
              callback=_csv(str, ("torch", "onnxruntime", "tensorrt")), help="comma-separated backends")
@click.option("--precisions", default="fp32,fp16,int8", show_default=True,
              callback=_csv(str, ("fp32", "fp16", "int8")), help="comma-separated precisions (not for torch)")
@click.option("--sizes", default="256,512", show_default=True, callback=_csv(int), help="square image sizes")
@click.option("--batch", "batches", default="1,4", show_default=True, callback=_csv(int), help="batch sizes")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=1), help="warm-up calls per case")
@click.option("--iters", default=6, show_default=True, type=click.IntRange(min=1), help="timed calls per case")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="intra-op threads (default: all cores)")
@click.option("--cuda-graph", is_flag=True, help="TensorRT rows capture a CUDA graph per shape and replay it")
@click.option("--json", "json_path", default="ec-bench/report.json", show_default=True, type=click.Path(path_type=Path))
@click.option("--markdown", "md_path", default="ec-bench/report.md", show_default=True, type=click.Path(path_type=Path))
@click.option("--plot", "plot_path", default="ec-bench/report.png", show_default=True, type=click.Path(path_type=Path),
              help="PNG chart (needs matplotlib)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
def main(export_dir, backends, precisions, sizes, batches, warmup, iters, threads, cuda_graph, json_path, md_path, plot_path, quiet):
    """Benchmark an EXPORT_DIR (from `ec-export`) against the eager-PyTorch baseline.

    \b
    Every row reports end-to-end latency (mean, p50, p90, p99, min) per call, throughput,
    a per-stage breakdown, peak RSS, PSNR against the torch baseline and its speed-up over it,
    measured interleaved in the same run. Unavailable combinations (TensorRT without a GPU,
    precisions the export lacks) are listed as skipped with the reason.

    \b
    Examples:
      ec-bench                                  # default model, exported to a temp dir first
      ec-bench export/ --sizes 512 --batch 1 --iters 20
      ec-bench export/ --backends onnxruntime --precisions fp32,int8 --threads 2
      ec-bench export/ --backends tensorrt --cuda-graph   # engines built with `ec-export engine`
    """
    from benchmarks.bench import BenchConfig, run_bench
    from benchmarks.environment import environment
    from benchmarks.report import markdown_table, write_json, write_markdown, write_plot

    bad = [s for s in sizes if s < 16 or s % 4]
    if bad:
        raise click.BadParameter(f"sizes must be multiples of 4 and at least 16, got {bad}", param_hint="--sizes")
    with tempfile.TemporaryDirectory(prefix="ec-bench-") as tmp:
        export_dir = export_dir or _export_default_model(Path(tmp), precisions)
        cfg = BenchConfig(export_dir=export_dir, backends=backends, precisions=precisions, sizes=sizes,
                          batches=batches, warmup=warmup, iters=iters, threads=threads,
                          cuda_graph=cuda_graph)
        result = run_bench(cfg, progress=not quiet)
    result["environment"] = environment()
    result["command"] = "ec-bench " + shlex.join(sys.argv[1:])
    if not result["rows"]:
        raise click.ClickException("nothing could be benchmarked: " +
                                   "; ".join(f"{s['backend']} {s['precision']}: {s['reason']}" for s in result["skipped"]))
    write_json(result, json_path)
    write_markdown(result, md_path)
    plot = write_plot(result, plot_path)
    click.echo(markdown_table(result["rows"]))
    for s in result["skipped"]:
        click.echo(f"skipped {s['backend']} {s['precision']}: {s['reason']}")
    click.echo(f"wrote {json_path}, {md_path}" + (f", {plot}" if plot else " (no plot: matplotlib is not installed)"))


if __name__ == "__main__":
    main()


@click.command("ec-eval", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("export_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="held-out photos (default: the bundled astronaut, coffee, chelsea and rocket)")
@click.option("--size", default=256, show_default=True, type=click.IntRange(min=16), help="evaluation size (square)")
@click.option("--masks-per-bin", default=3, show_default=True, type=click.IntRange(min=1),
              help="free-form holes per image in each hole-ratio bin (10-20, 20-30, 30-40, 40-50%)")
@click.option("--precisions", default="fp32,fp16,int8", show_default=True, callback=_csv(str, ("fp32", "fp16", "int8")))
@click.option("--threads", default=None, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "json_path", default="ec-eval/quality.json", show_default=True, type=click.Path(path_type=Path))
@click.option("--markdown", "md_path", default="ec-eval/quality.md", show_default=True, type=click.Path(path_type=Path))
@click.option("-q", "--quiet", is_flag=True)
def eval_main(export_dir, images, size, masks_per_bin, precisions, threads, seed, json_path, md_path, quiet):
    """Quality of EXPORT_DIR's model vs cv2.inpaint (TELEA, NS) on held-out photos.

    \b
    PSNR, SSIM (Gaussian window) and L1 of the merged image, per hole ratio, for the model in
    each precision and for OpenCV's two classical inpainting methods.
    """
    import json as _json

    from benchmarks.environment import environment, environment_markdown
    from benchmarks.quality import eval_cases, evaluate, load_images, opencv_method, quality_markdown
    from ec_runtime.pipeline import Inpainter

    with tempfile.TemporaryDirectory(prefix="ec-eval-") as tmp:
        export_dir = export_dir or _export_default_model(Path(tmp), precisions)
        info = _json.loads((export_dir / "export.json").read_text())
        available = info.get("models", {}).get("edge", {})
        missing = [p for p in precisions if p not in available]
        if missing:
            raise click.ClickException(f"{export_dir} has no {', '.join(missing)} models; re-export with "
                                       + " ".join(f"--{p}" for p in missing))
        methods, closers = {}, []
        for p in precisions:
            inp = Inpainter.from_dir(export_dir, backend="onnxruntime", precision=p, threads=threads,
                                     strategy="original")
            closers.append(inp.close)
            methods[f"ours {p}"] = inp.inpaint
        methods["cv2 TELEA"] = opencv_method(cv2_flag("TELEA"))
        methods["cv2 NS"] = opencv_method(cv2_flag("NS"))
        try:
            cases = eval_cases(load_images(images, size), masks_per_bin, seed)
            rows = evaluate(methods, cases, progress=not quiet)
        finally:
            for close in closers:
                close()
    env = environment()
    command = "ec-eval " + shlex.join(sys.argv[1:])
    table = quality_markdown(rows)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(_json.dumps({"environment": env, "command": command, "size": size,
                                      "model": info.get("source", {}), "rows": rows}, indent=2) + "\n")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(f"# ec-eval: quality on held-out photos\n\n{environment_markdown(env)}\n- command: `{command}`\n"
                       f"- {len(cases)} cases per method ({size}², merged images; L1 in % of full scale)\n\n{table}\n")
    click.echo(table)
    click.echo(f"wrote {json_path}, {md_path}")


def cv2_flag(name: str) -> int:
    import cv2

    return {"TELEA": cv2.INPAINT_TELEA, "NS": cv2.INPAINT_NS}[name]
