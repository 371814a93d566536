"""``ec-inpaint``: fill the holes of images with an exported EdgeConnect model (no torch needed).

INPUT and MASK are each a file or a directory. One mask file applies to every input image; with
two directories, masks are matched to images by file stem. Mask files: above half scale (> 127)
= hole, a 0/1 mask counts every nonzero pixel (see ``ec_runtime.imageio.hole_mask``).

Before any work the command refuses (exit 1, nothing written): output name clashes, outputs that
are inputs or masks, existing outputs without ``--overwrite``, and unwritable output locations
(see ``ec_runtime.jobs``). Outputs are written atomically with the usual file modes. A failing
file does not stop the batch: the summary lists failures and the exit code is 1 if any failed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

DEFAULT_MODEL_ENV = "EC_MODEL_DIR"


DEMO_MODEL_DIR = Path(__file__).resolve().parent / "models" / "demo"


def _default_model_dir() -> str:
    """``$EC_MODEL_DIR``, else ``./export`` when it exists, else the demo model that ships with the package."""
    if os.environ.get(DEFAULT_MODEL_ENV):
        return os.environ[DEFAULT_MODEL_ENV]
    if not Path("export").exists() and (DEMO_MODEL_DIR / "export.json").exists():
        return str(DEMO_MODEL_DIR)
    return "export"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--mask", "mask_path", required=True, type=click.Path(path_type=Path),
              help="Mask file (applies to every image) or directory of masks matched by file stem. "
                   "White (> 127) = hole; a 0/1 mask counts every nonzero pixel.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output file (single input; a path without a suffix is a directory) or directory "
                   "(<stem>.png per image).")
@click.option("--overwrite", is_flag=True,
              help="Replace outputs that already exist (never an input or a mask). Without it they are refused.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help=f"Export directory made by ec-export [default: ${DEFAULT_MODEL_ENV}, else ./export, else the bundled demo model].")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="int8 runs the export's *.int8_cpu.onnx (U8S8) on ONNX Runtime's CPU provider, "
                   "*.int8.onnx (S8S8) on TensorRT and ORT's GPU providers")
@click.option("--strategy", type=click.Choice(["original", "resize", "crop"]), default=None,
              help="How images larger than --max-side are handled [default: crop, chosen by measurement].")
@click.option("--max-side", type=click.IntRange(16), default=512, show_default=True,
              help="Long side above which the resize/crop strategies work at reduced size.")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True,
              help="Images per model call (same-size images are batched).")
@click.option("--save-edges", is_flag=True, help="Also write <stem>_edges.png (the edge map fed to stage 2).")
@click.option("--resize-mask", is_flag=True, help="Resize masks of another size to the image (nearest neighbour).")
@click.option("--threads", type=click.IntRange(1), default=None, help="ONNX Runtime intra-op threads.")
@click.option("--edge-merge", type=click.Choice(["training", "official"]), default="training", show_default=True,
              help="training: stage 2 gets predicted edges only inside the hole; official: the raw stage-1 map.")
@click.option("--device", type=click.IntRange(0), default=0, show_default=True, help="GPU index (TensorRT / CUDA).")
@click.option("--server", "server_url", default=None, metavar="URL",
              help="Run the models on a Triton server (ec-serve) instead, e.g. http://127.0.0.1:8000 or "
                   "grpc://127.0.0.1:8001; padding, strategies and cropping stay here.")
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default=None,
              help="With --server: protocol [default: the URL's scheme, else http].")
@click.option("--server-model", default="edgeconnect", show_default=True,
              help="With --server: the ensemble to call (--edge-merge official uses <name>_official).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
              help="With --server: seconds one request may take.")
def main(input_path, mask_path, output, overwrite, model_dir, backend, precision, strategy, max_side, batch,
         save_edges, resize_mask, threads, edge_merge, device, server_url, protocol, server_model, timeout):
    """Inpaint INPUT (an image file or a directory of images) where MASK is white.

    \b
    ec-inpaint photo.jpg --mask hole.png -o filled.png
    ec-inpaint photos/ --mask masks/ -o out/ --model export --save-edges
    ec-inpaint photos/ --mask masks/ -o out/ --server http://127.0.0.1:8000   (models on ec-serve)
    """
    # unreadable files are reported in our words: OpenCV's own log lines are noise here (this
    # variable only works before cv2 is first imported; imageio.quiet_opencv covers the rest)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    from ec_runtime.errors import EcRuntimeError
    from ec_runtime.jobs import check_output_dir, plan_jobs
    from ec_runtime.pipeline import Inpainter
    from ec_runtime.strategies import DEFAULT_STRATEGY

    if server_url is None and (protocol is not None or server_model != "edgeconnect"):
        raise click.UsageError("--protocol and --server-model apply only with --server URL")
    if server_url is not None:
        ctx = click.get_current_context()
        names = {"model_dir": "--model", "backend": "--backend", "precision": "--precision", "threads": "--threads",
                 "device": "--device"}
        local = [flag for n, flag in names.items()
                 if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]
        if local:
            raise click.UsageError(f"{', '.join(local)} choose local models and cannot be combined with --server "
                                   "(the server's repository decides backend and precision)")
    try:
        jobs = plan_jobs(input_path, mask_path, output, overwrite=overwrite, save_edges=save_edges)
        if server_url is not None:
            painter = Inpainter.from_server(server_url, server_model, protocol, timeout=timeout,
                                            edge_merge=edge_merge, strategy=strategy or DEFAULT_STRATEGY,
                                            max_side=max_side)
        else:
            import warnings

            with warnings.catch_warnings(record=True) as caught:  # e.g. auto not using mismatched engines
                warnings.simplefilter("always", RuntimeWarning)
                painter = Inpainter.from_dir(model_dir or Path(_default_model_dir()), backend=backend,
                                             precision=precision, device=device, threads=threads,
                                             edge_merge=edge_merge, strategy=strategy or DEFAULT_STRATEGY,
                                             max_side=max_side)
            for w in caught:
                click.echo(f"warning: {w.message}", err=True)
    except EcRuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        for directory in sorted({j.output.parent for j in jobs}):
            check_output_dir(directory, create=True)
        written, unchanged, failures = _run(painter, jobs, batch, resize_mask, overwrite)
    except EcRuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        painter.close()
    how = f"{painter.backend} ({precision})" if server_url is None else f"Triton at {painter.stages.url}"
    note = f" ({unchanged} had no hole and were copied unchanged)" if unchanged else ""
    click.echo(f"inpainted {written}/{len(jobs)} image(s) with {how} -> {output}{note}")
    if failures:
        click.echo(f"{len(failures)} failed:", err=True)
        for path, message in failures:
            click.echo(f"  {path}: {message}", err=True)
        sys.exit(1)


def _run(painter, jobs, batch: int, resize_mask: bool, overwrite: bool):
    """Inpaint ``jobs``; returns (written, copied unchanged, [(path, error)]).

    Images that fit ``--max-side`` are batched ``batch`` at a time. Larger ones go one at a time
    and are painted in place (the crop strategy touches only boxes around the holes), so a run
    holds one decoded image, its mask and the boxes' buffers at a time.
    """
    import warnings

    import numpy as np
    from tqdm import tqdm

    from ec_runtime.errors import EcRuntimeError, NoHoleWarning
    from ec_runtime.imageio import empty_mask_note, hole_mask, load_mask, quiet_opencv, read_image
    from ec_runtime.strategies import fits

    quiet_opencv()

    failures: list[tuple[Path, str]] = []
    counts = {"written": 0, "unchanged": 0}
    save_edges = any(j.edges for j in jobs)
    shown = tqdm(total=len(jobs), unit="img", disable=True if len(jobs) == 1 else None)  # None: off when not a TTY

    def load(job):
        try:
            image = read_image(job.image)
            raw = load_mask(job.mask, size=image.shape[:2] if resize_mask else None)
            peak = np.array([[raw.max(initial=0)]], raw.dtype)  # for the message: raw becomes the mask
            mask = hole_mask(raw, str(job.mask), owned=True)
            del raw
            if not mask.any():
                click.echo(f"warning: {empty_mask_note(peak, str(job.mask))}; {job.image.name} is copied unchanged",
                           err=True)
                counts["unchanged"] += 1
            return image, mask
        except EcRuntimeError as exc:
            failures.append((job.image, str(exc)))
        except MemoryError:
            failures.append((job.image, _no_memory()))
        return None

    def save(job, result) -> None:
        try:
            painted, edges = result
            _write(job, painted, edges, overwrite)
            counts["written"] += 1
        except EcRuntimeError as exc:
            failures.append((job.image, str(exc)))
        except MemoryError:
            failures.append((job.image, _no_memory()))

    def one(job, image, mask) -> None:
        try:
            result = painter.inpaint(image, mask, return_edges=save_edges, inplace=True)
        except EcRuntimeError as exc:
            failures.append((job.image, str(exc)))
            return
        except MemoryError:
            failures.append((job.image, _no_memory()))
            return
        save(job, result if save_edges else (result, None))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoHoleWarning)  # reported once above, with the file name
        for start in range(0, len(jobs), batch):
            chunk, group = jobs[start:start + batch], []
            for job in chunk:
                pair = load(job)
                if pair is None:
                    continue
                if batch > 1 and fits(pair[0].shape, painter.strategy, painter.max_side):
                    group.append((job, *pair))
                else:
                    one(job, *pair)
                del pair
            if group:
                try:
                    results = painter.inpaint_batch([g[1] for g in group], [g[2] for g in group],
                                                    return_edges=save_edges)
                except EcRuntimeError:  # one bad pair fails the batch call: redo one by one to isolate it
                    for g in group:
                        one(*g)
                else:
                    for g, result in zip(group, results):
                        save(g[0], result if save_edges else (result, None))
            shown.update(len(chunk))
    shown.close()
    return counts["written"], counts["unchanged"], failures


def _write(job, painted, edges, overwrite: bool) -> None:
    import numpy as np

    from ec_runtime.imageio import write_image

    write_image(job.output, painted, protect=(job.image, job.mask), overwrite=overwrite, inplace=True)
    if job.edges is not None:
        if not edges.flags.writeable or edges.dtype != np.float32:  # e.g. arrays a server returned
            edges = np.array(edges, np.float32)
        np.clip(edges, 0, 1, out=edges)
        edges *= 255
        edge_img = np.rint(edges, out=edges).astype(np.uint8)
        write_image(job.edges, edge_img, protect=(job.image, job.mask), overwrite=overwrite)


def _no_memory() -> str:
    return ("not enough memory for this image; free memory, use --strategy crop or resize with a smaller "
            "--max-side, or split the image")


if __name__ == "__main__":
    main()
