"""Time and quality of ec-inpaint's large-image strategies (original / resize / crop) on this machine.

    python -m benchmarks.runtime_strategies [--model EXPORT_DIR] [--max-side 512] [--threads N]

Photos: retina (1411 x 1411) and hubble_deep_field (872 x 1000), bundled with scikit-image. Masks:
``scattered`` free-form strokes over 10-20% of the image, and ``object``: two compact blobs
(~4% together), the usual object-removal case. For each strategy it prints the wall time of one
call (all strategies timed in the same run) and two PSNRs over the hole pixels: against the photo
(``gt``) and against the ``original`` strategy's output (``vs_orig``, how much the shortcut
changes the result). Without ``--model`` it exports the lite variant with random weights, so
``gt`` says little about a trained model; ``vs_orig`` and the times do not depend on training.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def object_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    for _ in range(2):
        cy, cx = int(rng.integers(h // 5, 4 * h // 5)), int(rng.integers(w // 5, 4 * w // 5))
        ay, ax = int(rng.integers(h // 16, h // 10)), int(rng.integers(w // 16, w // 10))
        cv2.ellipse(mask, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask.astype(bool)


def hole_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    diff = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    mse = float(np.mean(diff ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="export directory (default: lite, random weights)")
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from ec_runtime.pipeline import Inpainter
    from ec_train.masks import free_form_mask
    from ec_train.samples import sample_photo

    tmp = None
    model = args.model
    if model is None:
        import torch

        from ec_export.exporter import export_models
        from ec_train.registry import create_model

        tmp = tempfile.TemporaryDirectory()
        model = Path(tmp.name)
        torch.manual_seed(0)
        export_models(create_model("lite", "edge"), create_model("lite", "inpaint"), model, progress=False)
        print("model: lite variant, random weights (seed 0)")
    painter = Inpainter.from_dir(model, backend="onnxruntime", threads=args.threads, max_side=args.max_side)
    print(f"providers {painter.providers}, max_side {args.max_side}")
    print(f"{'photo':<28}{'mask':<10}{'hole%':>6}  {'strategy':<9}{'seconds':>9}{'x faster':>9}"
          f"{'gt dB':>8}{'vs_orig dB':>11}")
    for name in ("retina", "hubble_deep_field"):
        photo = sample_photo(name)
        h, w = photo.shape[:2]
        rng = np.random.default_rng(0)
        masks = {"scattered": free_form_mask(h, w, rng, (0.1, 0.2)).astype(bool), "object": object_mask(h, w, rng)}
        for mask_name, mask in masks.items():
            results = {}
            for strategy in ("original", "resize", "crop"):
                start = time.perf_counter()
                out = painter.inpaint(photo, mask, strategy=strategy)
                results[strategy] = (time.perf_counter() - start, out)
            base_time, base = results["original"]
            for strategy, (seconds, out) in results.items():
                print(f"{name + f' {w}x{h}':<28}{mask_name:<10}{100 * mask.mean():>5.1f}%  {strategy:<9}"
                      f"{seconds:>9.2f}{base_time / seconds:>9.2f}{hole_psnr(out, photo, mask):>8.2f}"
                      f"{hole_psnr(out, base, mask):>11.2f}")
    painter.close()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
