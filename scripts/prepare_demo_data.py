"""Collect the openly licensed real photos the demo model is trained and evaluated on.

    python scripts/prepare_demo_data.py --out data/demo

Sources (nothing outside the package registries):
* photos bundled with scikit-image (``skimage.data``; grayscale ones repeated over RGB);
* Debian's ``mate-backgrounds`` (GPL-2+) and ``lomiri-wallpapers-20.04`` (CC-BY-SA) packages, fetched
  with ``apt-get download`` and unpacked with ``dpkg -x`` (no installation, no root needed for
  the unpacking).

Writes every photo as PNG with its short side scaled to ``--short-side``; from each training photo
it also cuts ``--crops-per-photo`` random square crops (side 30-100% of the short side, resized to
``--crop-size``), because the trainer center-crops each listed file once and a few dozen photos
alone would be memorised. ``train.flist`` lists the crops, ``holdout.flist`` the held-out photos,
which never enter training; evaluation and the README's main job use them. ``sources.tsv``
records every photo's split, origin and licence. The Debian packages ``ukui-wallpapers``,
``plasma-workspace-wallpapers`` and ``lomiri-wallpapers-16.04`` are reserved for evaluation
outside the project and are never fetched.
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


DEBIAN_PACKAGES = ("mate-backgrounds", "lomiri-wallpapers-20.04")
TRAIN_SKIMAGE = ("stereo_motorcycle", "hubble_deep_field", "immunohistochemistry", "retina",
                 "gravel", "brick", "coins", "clock")
HOLDOUT_SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket",  # chelsea == skimage's cat: both held out
                   "camera", "grass")
# Licence of each photo, as its scikit-image docstring or the package's debian/copyright states it.
LICENCES = {
    "stereo_motorcycle": "scikit-image bundled data (Middlebury stereo dataset, research use)",
    "hubble_deep_field": "public domain (NASA)", "immunohistochemistry": "no known copyright restrictions",
    "retina": "CC0 1.0", "gravel": "CC0 (CC0Textures)", "brick": "CC0 (CC0Textures)",
    "coins": "no known copyright restrictions", "clock": "public domain (Stefan van der Walt)",
    "astronaut": "public domain (NASA)", "coffee": "CC0 (Rachel Michetti)", "chelsea": "CC0 (Stefan van der Walt)",
    "rocket": "public domain (SpaceX)", "camera": "CC0 (Lav Varshney)", "grass": "CC0",
    "mate-backgrounds": "GPL-2+ (debian/copyright of mate-backgrounds)",
    "lomiri-wallpapers-20.04": "CC-BY-SA-3.0 (debian/copyright of lomiri-wallpapers-20.04)",
}
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


def skimage_photo(name: str):
    """A photo bundled with scikit-image as uint8 RGB (grayscale ones are repeated over 3 channels)."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle returns (left, right, disparity)
        img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


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
    sources = ["file\tsplit\tsource\tlicence"]
    for split, names in (("train", TRAIN_SKIMAGE), ("holdout", HOLDOUT_SKIMAGE)):
        for name in names:
            path = out / split / f"skimage_{name}.png"
            save(skimage_photo(name), path, args.short_side)
            lists[split].append(path)
            sources.append(f"{path.name}\t{split}\tscikit-image skimage.data.{name}\t{LICENCES[name]}")
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
                package = "mate-backgrounds" if rel.startswith("mate/") else "lomiri-wallpapers-20.04"
                sources.append(f"{path.name}\t{split}\tDebian {package}: usr/share/backgrounds/{rel}"
                               f"\t{LICENCES[package]}")
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
    (out / "sources.tsv").write_text("\n".join(sources) + "\n")
    for split, paths in lists.items():
        (out / f"{split}.flist").write_text("".join(f"{p.resolve()}\n" for p in paths))
        print(f"{split}: {len(paths)} images -> {out / (split + '.flist')}")


if __name__ == "__main__":
    main()
