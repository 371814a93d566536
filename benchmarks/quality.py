"""``ec-eval``: inpainting quality on held-out photos, per hole ratio, against OpenCV baselines.

Metrics are computed on the merged image (known pixels kept, the hole filled), as EdgeConnect's
paper reports them: PSNR, SSIM (Wang et al.: 11x11 Gaussian window, sigma 1.5, K1 0.01,
K2 0.03, averaged over the RGB channels) and mean L1 (in [0, 1] units, so 0.02 = 2%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

HOLE_BINS = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5))
HOLDOUT_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # never used to train the demo model


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Gaussian-window SSIM of two uint8 (H, W, 3) images, averaged over channels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)

    def blur(z):
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[5:-5, 5:-5].mean())  # skip the borders the window cannot cover


def l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))) / 255.0)


def opencv_method(flag: int, radius: int = 5) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``cv2.inpaint`` with TELEA or NS as a method (uint8 RGB, mask nonzero = hole)."""
    def run(image, mask):
        return cv2.inpaint(image, (mask != 0).astype(np.uint8) * 255, radius, flag)
    return run


@dataclass
class EvalCase:
    name: str
    image: np.ndarray
    mask: np.ndarray
    bin: tuple[float, float]


def eval_cases(images: dict[str, np.ndarray], masks_per_bin: int, seed: int = 0) -> list[EvalCase]:
    """Every image with ``masks_per_bin`` free-form holes in each hole-ratio bin (seeded)."""
    from ec_train.masks import free_form_mask

    rng = np.random.default_rng(seed)
    cases = []
    for lo_hi in HOLE_BINS:
        for name, img in images.items():
            for _ in range(masks_per_bin):
                mask = free_form_mask(img.shape[0], img.shape[1], rng, lo_hi)
                cases.append(EvalCase(name, img, mask, lo_hi))
    return cases


def evaluate(methods: dict[str, Callable], cases: list[EvalCase], progress: bool = True) -> list[dict]:
    """Mean PSNR/SSIM/L1 per method and hole bin, on merged images."""
    from tqdm.auto import tqdm

    scores: dict[tuple[str, tuple], list[tuple[float, float, float]]] = {}
    with tqdm(total=len(methods) * len(cases), desc="ec-eval", unit="img", disable=not progress) as bar:
        for method, fn in methods.items():
            for case in cases:
                out = fn(case.image, case.mask)
                hole = case.mask[..., None] != 0
                merged = np.where(hole, out, case.image)
                scores.setdefault((method, case.bin), []).append(
                    (psnr(merged, case.image), ssim(merged, case.image), l1(merged, case.image)))
                bar.update(1)
    rows = []
    for (method, lo_hi), vals in scores.items():
        arr = np.asarray(vals)
        rows.append({"method": method, "holes": f"{int(lo_hi[0] * 100)}-{int(lo_hi[1] * 100)}%",
                     "psnr_db": float(arr[:, 0].mean()), "ssim": float(arr[:, 1].mean()),
                     "l1": float(arr[:, 2].mean()), "n": len(vals)})
    return rows


def quality_markdown(rows: list[dict]) -> str:
    """One line per hole bin; PSNR / SSIM / L1 columns per method."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    bins = list(dict.fromkeys(r["holes"] for r in rows))
    head = "| holes | " + " | ".join(f"{m} PSNR / SSIM / L1" for m in methods) + " |"
    lines = [head, "|---|" + "---|" * len(methods)]
    for b in bins:
        cells = []
        for m in methods:
            r = next(x for x in rows if x["method"] == m and x["holes"] == b)
            cells.append(f"{r['psnr_db']:.2f} / {r['ssim']:.3f} / {100 * r['l1']:.2f}%")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_images(source: str | Path | None, size: int) -> dict[str, np.ndarray]:
    """Held-out images: a folder of photos (center-cropped to ``size``) or the held-out bundled photos."""
    from ec_runtime.imageio import read_image
    from ec_train.samples import center_crop_resize, sample_photo

    if source is None:
        return {name: sample_photo(name, size) for name in HOLDOUT_PHOTOS}
    files = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not files:
        raise FileNotFoundError(f"no images (png/jpg/webp) in {source}")
    return {p.stem: center_crop_resize(read_image(p), size, size) for p in files}
