"""``ec-inpaint``: fill the holes of images with an exported EdgeConnect model (no torch needed).

INPUT and MASK are each a file or a directory. One mask file applies to every input image; with
two directories, masks are matched to images by file stem. Mask files: white (> 127) = hole.
Outputs are written atomically and never over an input. A failing file does not stop the batch:
the summary lists failures and the exit code is 1 if any failed.
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


def plan_jobs(input_path: Path, mask_path: Path, output: Path) -> list[tuple[Path, Path, Path]]:
    """(image, mask, output) triples for every image to inpaint."""
    from ec_runtime.errors import InputError
    from ec_runtime.imageio import list_images

    if not input_path.exists():
        raise InputError(f"{input_path}: no such file or directory")
    if not mask_path.exists():
        raise InputError(f"{mask_path}: no such file or directory")
    if input_path.is_file():
        if mask_path.is_dir():
            matches = [p for p in list_images(mask_path) if p.stem == input_path.stem]
            if not matches:
                raise InputError(f"{mask_path}: no mask named {input_path.stem}.* for {input_path}")
            mask_path = matches[0]
        out = output / f"{input_path.stem}.png" if output.is_dir() or not output.suffix else output
        return [(input_path, mask_path, out)]
    images = list_images(input_path)
    if not images:
        raise InputError(f"{input_path}: no images found (looked for {', '.join(('png', 'jpg', 'bmp', 'tif', 'webp'))})")
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: INPUT is a directory, so -o must be a directory")
    masks = {p.stem: p for p in list_images(mask_path)} if mask_path.is_dir() else None
    jobs = []
    for image in images:
        mask = mask_path if masks is None else masks.get(image.stem, mask_path / f"{image.stem}.png")
        jobs.append((image, mask, output / f"{image.stem}.png"))
    return jobs


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--mask", "mask_path", required=True, type=click.Path(path_type=Path),
              help="Mask file (applies to every image) or directory of masks matched by file stem. White (>127) = hole.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output file (single input; a path without a suffix is a directory) or directory.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help=f"Export directory made by ec-export [default: ${DEFAULT_MODEL_ENV}, else ./export, else the bundled demo model].")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
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
@click.option("--device", type=int, default=0, show_default=True, help="GPU index (TensorRT / CUDA).")
@click.option("--server", "server_url", default=None, metavar="URL",
              help="Run the models on a Triton server (ec-serve) instead, e.g. http://127.0.0.1:8000 or "
                   "grpc://127.0.0.1:8001; padding, strategies and cropping stay here.")
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default=None,
              help="With --server: protocol [default: the URL's scheme, else http].")
@click.option("--server-model", default="edgeconnect", show_default=True,
              help="With --server: the ensemble to call (--edge-merge official uses <name>_official).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
              help="With --server: seconds one request may take.")
def main(input_path, mask_path, output, model_dir, backend, precision, strategy, max_side, batch, save_edges,
         resize_mask, threads, edge_merge, device, server_url, protocol, server_model, timeout):
    """Inpaint INPUT (an image file or a directory of images) where MASK is white."""
    import numpy as np
    from tqdm import tqdm

    from ec_runtime.errors import EcRuntimeError
    from ec_runtime.imageio import read_image, read_mask, write_image
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
        jobs = plan_jobs(input_path, mask_path, output)
        if server_url is not None:
            painter = Inpainter.from_server(server_url, server_model, protocol, timeout=timeout,
                                            edge_merge=edge_merge, strategy=strategy or DEFAULT_STRATEGY,
                                            max_side=max_side)
        else:
            painter = Inpainter.from_dir(model_dir or Path(_default_model_dir()), backend=backend,
                                         precision=precision, device=device, threads=threads, edge_merge=edge_merge,
                                         strategy=strategy or DEFAULT_STRATEGY, max_side=max_side)
    except EcRuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    if input_path.is_dir():
        output.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[Path, str]] = []
    written = 0
    shown = tqdm(total=len(jobs), unit="img", disable=True if len(jobs) == 1 else None)  # None: off when not a TTY
    for start in range(0, len(jobs), batch):
        chunk, loaded = jobs[start:start + batch], []
        for image_path, m_path, out_path in chunk:
            try:
                image = read_image(image_path)
                mask = read_mask(m_path, size=image.shape[:2] if resize_mask else None)
                loaded.append((image_path, m_path, out_path, image, mask))
            except EcRuntimeError as exc:
                failures.append((image_path, str(exc)))
        results = []
        if loaded:
            try:
                results = painter.inpaint_batch([x[3] for x in loaded], [x[4] for x in loaded], return_edges=True)
            except EcRuntimeError:  # one bad pair fails the batch call: redo one by one to isolate it
                results = []
                for x in loaded:
                    try:
                        results.append(painter.inpaint(x[3], x[4], return_edges=True))
                    except EcRuntimeError as exc:
                        failures.append((x[0], str(exc)))
                        results.append(None)
        for (image_path, m_path, out_path, _, _), result in zip(loaded, results):
            if result is None:
                continue
            try:
                painted, edges = result
                write_image(out_path, painted, protect=(image_path, m_path))
                if save_edges:
                    edge_img = np.rint(np.clip(edges, 0, 1) * 255).astype(np.uint8)
                    write_image(out_path.with_name(f"{out_path.stem}_edges.png"), edge_img,
                                protect=(image_path, m_path))
                written += 1
            except (EcRuntimeError, OSError) as exc:
                failures.append((image_path, str(exc)))
        shown.update(len(chunk))
    shown.close()
    painter.close()
    how = f"{painter.backend} ({precision})" if server_url is None else f"Triton at {painter.stages.url}"
    click.echo(f"inpainted {written}/{len(jobs)} image(s) with {how} -> {output}")
    if failures:
        click.echo(f"{len(failures)} failed:", err=True)
        for path, message in failures:
            click.echo(f"  {path}: {message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
