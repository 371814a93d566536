"""Sample inputs and the before/after montage for the README's main job.

    python scripts/demo_samples.py make OUT_DIR [--count 4] [--size 512]
    python scripts/demo_samples.py montage SAMPLES_DIR RESULTS_DIR MONTAGE.png

``make`` writes held-out photos (never used to train the demo model) to OUT_DIR/photos and
free-form hole masks (white = hole, 20-45% of the image) to OUT_DIR/masks. ``montage`` lays out
one row per photo: photo with the hole painted white | edges | inpainted | original.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HOLDOUT = ("astronaut", "coffee", "chelsea", "rocket")


def make(out: Path, count: int, size: int) -> None:
    from ec_train.masks import free_form_mask
    from ec_train.samples import sample_photo

    (out / "photos").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    for name in HOLDOUT[:count]:
        cv2.imwrite(str(out / "photos" / f"{name}.png"), sample_photo(name, size)[..., ::-1])
        cv2.imwrite(str(out / "masks" / f"{name}.png"), free_form_mask(size, size, rng, (0.2, 0.45)) * 255)
    print(f"{min(count, len(HOLDOUT))} photos and masks in {out}")


def _tile(img: np.ndarray, side: int = 256) -> np.ndarray:
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)


def montage(samples: Path, results: Path, target: Path) -> None:
    rows = []
    for photo in sorted((samples / "photos").glob("*.png")):
        img = cv2.imread(str(photo))
        hole = cv2.imread(str(samples / "masks" / photo.name), cv2.IMREAD_GRAYSCALE) > 127
        masked = img.copy()
        masked[hole] = 255
        out = cv2.imread(str(results / photo.name))
        edges = next((cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(results.glob(f"{photo.stem}*edge*"))), None)
        if out is None:
            raise SystemExit(f"no result for {photo.name} in {results}")
        if edges is None:
            edges = np.zeros(img.shape[:2], np.uint8)
        rows.append(np.hstack([_tile(masked), _tile(255 - edges), _tile(out), _tile(img)]))
    if not rows:
        raise SystemExit(f"no photos in {samples / 'photos'}")
    header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    for i, label in enumerate(("input (hole in white)", "edges fed to stage 2", "inpainted", "original")):
        cv2.putText(header, label, (8 + 256 * i, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), np.vstack([header, *rows]))
    print(f"montage: {target}")


def main() -> None:
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "make":
        count = int(args[args.index("--count") + 1]) if "--count" in args else 4
        size = int(args[args.index("--size") + 1]) if "--size" in args else 512
        make(Path(args[1]), count, size)
    elif len(args) == 4 and args[0] == "montage":
        montage(Path(args[1]), Path(args[2]), Path(args[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
