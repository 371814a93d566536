"""How closely the tensor-op Canny reproduces ``skimage.feature.canny``, and what it costs.

Run ``python -m benchmarks.canny_agreement`` (``--help`` for options). For bundled photos at each
size, with and without a free-form hole mask (known = 1 - hole), it prints:

* exact-pixel precision / recall / F1 of :class:`ec_train.canny.Canny` against skimage, per image,
  and the means;
* mean F1 as a function of the hysteresis round count (how the default was chosen);
* the time of ``canny.onnx`` in ONNX Runtime (CPU) as a fraction of one paper-size InpaintGenerator
  forward at the same size, both timed interleaved in this run.

The report is also written as Markdown (default ``benchmarks/results/canny_agreement.md``).
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

import click

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "hubble_deep_field",
          "immunohistochemistry", "retina")
CURVE = (0, 8, 16, 32, 64, 96, 128, 160, 192, 256)
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "canny_agreement.md"


def precision_recall_f1(pred, ref) -> tuple[float, float, float]:
    """Exact-pixel scores of boolean edge maps; an empty prediction of an empty reference scores 1."""
    tp = float((pred & ref).sum())
    n_pred, n_ref = float(pred.sum()), float(ref.sum())
    precision = tp / n_pred if n_pred else float(n_ref == 0)
    recall = tp / n_ref if n_ref else float(n_pred == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def make_cases(size: int, photos, seed: int):
    """[(photo, masked?, gray float64 HxW, known uint8 HxW, skimage edges)] for one size."""
    import numpy as np
    from skimage.color import rgb2gray
    from skimage.feature import canny

    from ec_train.masks import free_form_mask
    from ec_train.samples import sample_photo

    cases = []
    for index, name in enumerate(photos):
        gray = rgb2gray(sample_photo(name, size))
        hole = free_form_mask(size, size, np.random.default_rng(seed + index))
        known = (1 - hole).astype(np.uint8)
        cases.append((name, False, gray, np.ones_like(known), canny(gray, sigma=2)))
        cases.append((name, True, gray, known, canny(gray, sigma=2, mask=known.astype(bool))))
    return cases


def run_canny(cases, iterations: int):
    """Torch Canny on all cases as one batch -> boolean (B, H, W)."""
    import numpy as np
    import torch

    from ec_train.canny import Canny

    gray = torch.from_numpy(np.stack([c[2] for c in cases])).float()[:, None]
    known = torch.from_numpy(np.stack([c[3] for c in cases])).float()[:, None]
    with torch.no_grad():
        return Canny(sigma=2.0, iterations=iterations)(gray, known)[:, 0].numpy() > 0.5


def agreement_section(size: int, cases, iterations: int, curve) -> tuple[list[str], dict]:
    import numpy as np

    lines = [f"### {size}x{size}, iterations={iterations}", "",
             "| photo | mask | precision | recall | F1 | skimage edge px |", "|---|---|---|---|---|---|"]
    scores = {False: [], True: []}
    for (name, masked, *_, ref), pred in zip(cases, run_canny(cases, iterations)):
        p, r, f = precision_recall_f1(pred, ref)
        scores[masked].append((p, r, f))
        lines.append(f"| {name} | {'hole' if masked else 'none'} | {p:.5f} | {r:.5f} | {f:.5f} | {int(ref.sum())} |")
    means = {}
    for masked, rows in scores.items():
        p, r, f = np.mean(rows, axis=0)
        means["hole" if masked else "none"] = float(f)
        lines.append(f"| **mean** | {'hole' if masked else 'none'} | {p:.5f} | {r:.5f} | **{f:.5f}** | |")
    lines += ["", f"F1 vs hysteresis rounds at {size}x{size} (mean / min over photos):", "",
              "| rounds | mean F1, no mask | mean F1, hole | min F1 |", "|---|---|---|---|"]
    for rounds in curve:
        f1s = [[], []]
        for (_, masked, *_, ref), pred in zip(cases, run_canny(cases, rounds)):
            f1s[masked].append(precision_recall_f1(pred, ref)[2])
        lines.append(f"| {rounds} | {np.mean(f1s[0]):.5f} | {np.mean(f1s[1]):.5f} | {min(f1s[0] + f1s[1]):.5f} |")
    return lines, means


def timing_section(sizes, iterations: int, warmup: int, iters: int) -> list[str]:
    import numpy as np
    import onnxruntime as ort
    import torch
    from tqdm import tqdm

    from benchmarks.stats import latency_stats, time_interleaved
    from ec_export.canny_onnx import export_canny
    from ec_export.onnx_io import export_onnx
    from ec_train.registry import create_model

    lines = ["| size | canny.onnx p50 ms | InpaintGenerator p50 ms | ratio (p50) | ratio (mean) |",
             "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        canny_path = export_canny(Path(tmp) / "canny.onnx", iterations=iterations)
        inpaint_path = Path(tmp) / "inpaint.onnx"
        export_onnx(create_model("edgeconnect", "inpaint").eval(), (torch.rand(1, 4, 64, 64),), inpaint_path,
                    ["x"], ["y"])
        options = ort.SessionOptions()
        canny = ort.InferenceSession(str(canny_path), options, providers=["CPUExecutionProvider"])
        inpaint = ort.InferenceSession(str(inpaint_path), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        for size in sizes:
            gray = rng.random((1, 1, size, size), dtype=np.float32)
            mask = (rng.random((1, 1, size, size)) > 0.8).astype(np.float32)
            x = rng.random((1, 4, size, size), dtype=np.float32)
            bar = tqdm(total=iters, desc=f"timing {size}x{size}", file=sys.stderr, leave=False)
            times = time_interleaved({"canny": lambda: canny.run(None, {"gray": gray, "mask": mask}),
                                      "inpaint": lambda: inpaint.run(None, {"x": x})},
                                     warmup=warmup, iters=iters, on_step=bar.update)
            bar.close()
            c, i = latency_stats(times["canny"]), latency_stats(times["inpaint"])
            lines.append(f"| {size} | {c['p50_ms']:.1f} | {i['p50_ms']:.1f} | {c['p50_ms'] / i['p50_ms']:.2%} | "
                         f"{c['mean_ms'] / i['mean_ms']:.2%} |")
    return lines


@click.command()
@click.option("--sizes", default="256,512", show_default=True, help="Comma-separated square sizes.")
@click.option("--photos", default=",".join(PHOTOS), show_default=True, help="Comma-separated bundled photos.")
@click.option("--iterations", type=int, default=None, help="Hysteresis rounds (default: Canny's default).")
@click.option("--curve", default=",".join(map(str, CURVE)), show_default=True, help="Rounds for the F1 curve.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hole masks.")
@click.option("--timing-iters", type=int, default=5, show_default=True, help="Timed runs per model and size.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_OUTPUT,
              show_default=True, help="Markdown report ('-' for none).")
def main(sizes, photos, iterations, curve, seed, timing_iters, output):
    """Agreement of the tensor Canny with skimage, and its ONNX Runtime cost next to the inpaint generator."""
    from tqdm import tqdm

    from benchmarks.environment import environment, environment_markdown
    from ec_train.canny import DEFAULT_ITERATIONS

    sizes = [int(s) for s in sizes.split(",")]
    photos = [p.strip() for p in photos.split(",") if p.strip()]
    curve = [int(c) for c in curve.split(",")]
    iterations = DEFAULT_ITERATIONS if iterations is None else iterations
    report = ["# Canny: tensor ops vs skimage.feature.canny (sigma=2, low 0.1, high 0.2)", "",
              f"Command: `{' '.join(['python -m benchmarks.canny_agreement', *map(shlex.quote, sys.argv[1:])])}`", "",
              environment_markdown(environment()), "",
              "Exact-pixel scores against skimage on float64 `rgb2gray` photos; `hole` uses a free-form "
              "hole mask (skimage `mask` = known region).", ""]
    summary = []
    for size in tqdm(sizes, desc="agreement", file=sys.stderr):
        lines, means = agreement_section(size, make_cases(size, photos, seed), iterations, curve)
        report += lines + [""]
        summary.append(f"- {size}x{size}: mean F1 {means['none']:.5f} (no mask), {means['hole']:.5f} (hole)")
        print("\n".join(lines) + "\n", flush=True)
    report += ["## ONNX Runtime CPU time: canny.onnx vs one InpaintGenerator forward (paper size, interleaved)", ""]
    load_before = os.getloadavg()[0]
    timing = timing_section(sizes, iterations, warmup=1, iters=timing_iters)
    timing += ["", f"1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after timing "
               f"on {os.cpu_count()} cores (other work on a shared machine slows both models alike)."]
    print("\n".join(timing), flush=True)
    report += timing + ["", "## Summary", ""] + summary
    if str(output) != "-":
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("\n".join(report) + "\n")
        print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
