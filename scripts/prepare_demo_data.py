"""Collect the openly licensed real photos the demo model is trained and evaluated on.

    python scripts/prepare_demo_data.py --out data/demo

Sources (nothing outside the package registries):
* photos bundled with scikit-image (``skimage.data``);
* Debian's ``mate-backgrounds`` (GPL-2+) and ``lomiri-wallpapers-20.04`` (CC-BY-SA) packages, fetched
  with ``apt-get download`` and unpacked with ``dpkg -x`` (no installation, no root needed for
  the unpacking).

Writes every photo as PNG with its short side scaled to ``--short-side``; from each training photo
it also cuts ``--crops-per-photo`` random square crops (side 30-100% of the short side, resized to
``--crop-size``), because the trainer center-crops each listed file once and a few dozen photos
alone would be memorised. ``train.flist`` lists the crops, ``holdout.flist`` the held-out photos,
which never enter training; evaluation and the README's main job use them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ec_train.samples import sample_photo  # noqa: E402

DEBIAN_PACKAGES = ("mate-backgrounds", "lomiri-wallpapers-20.04")
TRAIN_SKIMAGE = ("stereo_motorcycle", "hubble_deep_field", "immunohistochemistry", "retina")
HOLDOUT_SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket")  # chelsea == skimage's cat: both held out
TRAIN_DEBIAN = (
    "mate/nature/Aqua.jpg", "mate/nature/Blinds.jpg", "mate/nature/Dune.jpg", "mate/nature/FreshFlower.jpg",
    "mate/nature/Garden.jpg", "mate/nature/GreenMeadow.jpg", "mate/nature/RainDrops.jpg",
    "mate/nature/Storm.jpg", "mate/nature/TwoWings.jpg", "mate/nature/Wood.jpg",
    "Kleiber_by_Lukas_Baubkus.jpg", "Infinite-Sea_by_Aury88.jpg",
)
HOLDOUT_DEBIAN = ("mate/nature/LadyBird.jpg", "mate/nature/YellowFlower.jpg")


def fetch_debian(workdir: Path) -> Path:
    """Download and unpack the wallpaper packages; returns their ``usr/share/backgrounds``."""
    root = workdir / "root"
    for package in DEBIAN_PACKAGES:
        subprocess.run(["apt-get", "download", package], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    for deb in sorted(workdir.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root / "usr/share/backgrounds"


def save(img_rgb, path: Path, short_side: int) -> None:
    h, w = img_rgb.shape[:2]
    scale = short_side / min(h, w)
    if scale < 1:
        img_rgb = cv2.resize(img_rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR))


def random_crops(img_rgb, count: int, size: int, rng: np.random.Generator) -> list:
    """Square crops at random positions and scales (30-100% of the short side), resized to ``size``."""
    h, w = img_rgb.shape[:2]
    crops = []
    for _ in range(count):
        side = int(rng.uniform(0.3, 1.0) * min(h, w))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crops.append(cv2.resize(img_rgb[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA))
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/demo"))
    parser.add_argument("--short-side", type=int, default=384)
    parser.add_argument("--crops-per-photo", type=int, default=48)
    parser.add_argument("--crop-size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "holdout").mkdir(parents=True, exist_ok=True)
    lists = {"train": [], "holdout": []}
    for split, names in (("train", TRAIN_SKIMAGE), ("holdout", HOLDOUT_SKIMAGE)):
        for name in names:
            path = out / split / f"skimage_{name}.png"
            save(sample_photo(name), path, args.short_side)
            lists[split].append(path)
    if shutil.which("apt-get") is None:
        sys.exit("apt-get is needed to fetch the Debian wallpaper packages")
    with tempfile.TemporaryDirectory() as tmp:
        backgrounds = fetch_debian(Path(tmp))
        for split, names in (("train", TRAIN_DEBIAN), ("holdout", HOLDOUT_DEBIAN)):
            for rel in names:
                img = cv2.imread(str(backgrounds / rel), cv2.IMREAD_COLOR)
                if img is None:
                    sys.exit(f"missing photo in the Debian packages: {rel}")
                path = out / split / ("debian_" + Path(rel).stem + ".png")
                save(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), path, args.short_side)
                lists[split].append(path)
    rng = np.random.default_rng(args.seed)
    (out / "train_crops").mkdir(exist_ok=True)
    crops = []
    for photo in lists["train"]:
        img = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
        for i, crop in enumerate(random_crops(img, args.crops_per_photo, args.crop_size, rng)):
            path = out / "train_crops" / f"{photo.stem}_{i:03d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            crops.append(path)
    lists["train"] = crops
    for split, paths in lists.items():
        (out / f"{split}.flist").write_text("".join(f"{p.resolve()}\n" for p in paths))
        print(f"{split}: {len(paths)} images -> {out / (split + '.flist')}")


if __name__ == "__main__":
    main()
