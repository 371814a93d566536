"""Training and validation data: images from folders or flist files, masks from files or generators.

Every random choice of a sample (flip, mask) comes from a generator seeded by
``(seed, epoch, index)``, so batches are identical whatever the number of DataLoader workers,
and a resumed run sees exactly the batches an uninterrupted one would. The sampler is an endless
stream of :class:`torch.utils.data.DistributedSampler` epochs that can start mid-stream.
"""

from __future__ import annotations

import itertools
import os
import signal
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ec_train.errors import DataError
from ec_train.masks import MASK_KINDS, load_mask, procedural_mask
from ec_train.samples import center_crop_resize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
_MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}


def _looks_like_image(path: Path) -> bool:
    """A cheap header check (no decoding) so a large data set is scanned quickly."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if any(head.startswith(m) for m in _MAGIC):
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def list_images(source: str | os.PathLike, what: str = "images") -> list[Path]:
    """Image paths from a folder (recursive; jpg, png, webp) or an flist file (one path a line).

    Relative flist entries are resolved against the flist's folder. Files that are not images
    (bad header, unreadable) are skipped with one warning that gives their count. Raises
    :class:`DataError` when nothing usable is left.
    """
    src = Path(source).expanduser()
    if src.is_dir():
        paths = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not paths:
            raise DataError(f"no {what} in {src}: expected .jpg, .jpeg, .png or .webp files (searched recursively)")
    elif src.is_file():
        try:
            lines = [ln.strip() for ln in src.read_text().splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{src} is neither a folder nor a readable flist (text file of paths): {exc}") from exc
        paths = [(src.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines if ln and not ln.startswith("#")]
        if not paths:
            raise DataError(f"flist {src} lists no {what}")
    else:
        raise DataError(f"{what} source not found: {src} (pass a folder or an flist file)")
    good = [p for p in paths if _looks_like_image(p)]
    bad = len(paths) - len(good)
    if bad:
        examples = ", ".join(str(p) for p in paths if p not in set(good))[:300]
        warnings.warn(f"skipped {bad} unreadable or non-image file(s) of {len(paths)} in {src}: {examples}", stacklevel=2)
    if not good:
        raise DataError(f"none of the {len(paths)} files in {src} is a readable image")
    return good


def read_image(path: Path, size: int) -> np.ndarray | None:
    """RGB uint8 (size, size, 3), center-cropped and resized; None when the file cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    return center_crop_resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size, size)


class MaskSource:
    """Hole masks (1 = hole) drawn from files or from a procedural generator.

    With ``paths`` a random file is chosen per sample (training) or file ``i`` for sample ``i``
    (``paired=True``, validation). ``required`` is how many distinct masks the caller needs; a
    smaller mask set raises a :class:`DataError`.
    """

    def __init__(self, size: int, paths: list[Path] | None = None, kind: str = "mixed", invert: bool = False,
                 threshold: float = 0.5, hole_ratio=(0.1, 0.5), paired: bool = False, required: int = 1):
        if paths is None and kind not in MASK_KINDS:
            raise DataError(f"unknown mask kind {kind!r}; expected one of {', '.join(MASK_KINDS)}")
        if paths is not None and len(paths) < required:
            raise DataError(f"the mask set has {len(paths)} mask(s), fewer than the {required} requested "
                            f"(one per {'validation image' if paired else 'sample'}); add masks or use --mask-kind")
        self.size, self.paths, self.kind, self.invert = size, paths, kind, invert
        self.threshold, self.hole_ratio, self.paired = threshold, tuple(hole_ratio), paired

    def draw(self, index: int, rng: np.random.Generator) -> np.ndarray:
        if self.paths is None:
            return procedural_mask(self.kind, self.size, self.size, rng, self.hole_ratio)
        i = index % len(self.paths) if self.paired else int(rng.integers(len(self.paths)))
        return load_mask(self.paths[i], (self.size, self.size), self.threshold, self.invert)


class InpaintDataset(Dataset):
    """Samples ``{"image": (3,S,S) float [0,1], "mask": (1,S,S) float, "index": int}``.

    Indexed by ``(epoch, index)`` pairs (see :class:`ResumableSampler`) or plain ints (epoch 0).
    An image that cannot be decoded is replaced by the next readable one, with a warning.
    """

    def __init__(self, paths: list[Path], masks: MaskSource, size: int, seed: int = 0, augment: bool = True):
        self.paths, self.masks, self.size, self.seed, self.augment = paths, masks, size, seed, augment
        self.skipped: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, index])
        img = None
        for offset in range(len(self.paths)):
            j = (index + offset) % len(self.paths)
            img = read_image(self.paths[j], self.size)
            if img is not None:
                break
            if j not in self.skipped:
                self.skipped.add(j)
                warnings.warn(f"cannot decode {self.paths[j]}; using another image instead "
                              f"({len(self.skipped)} undecodable so far)", stacklevel=2)
        if img is None:
            raise DataError(f"none of the {len(self.paths)} images can be decoded")
        if self.augment and rng.random() > 0.5:
            img = img[:, ::-1]
        mask = self.masks.draw(index, rng)
        image = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0
        return {"image": image, "mask": torch.from_numpy(mask.astype(np.float32))[None], "index": index}


class ResumableSampler(Sampler):
    """An endless stream of shuffled epochs, sharded per rank like ``DistributedSampler``.

    ``start`` is how many samples this rank has already consumed (``iteration * batch``), so
    a resumed run continues with exactly the next samples. Yields ``(epoch, index)``.
    """

    def __init__(self, length: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0):
        self.inner = DistributedSampler(range(length), num_replicas=world_size, rank=rank, shuffle=True,
                                        seed=seed, drop_last=False)
        self.start = start

    def __iter__(self):
        per_epoch = len(self.inner)
        epoch, skip = divmod(self.start, per_epoch)
        for e in itertools.count(epoch):
            self.inner.set_epoch(e)
            for index in itertools.islice(iter(self.inner), skip, None):
                yield (e, index)
            skip = 0


def build_mask_source(cfg, paired: bool = False, required: int = 1) -> MaskSource:
    paths = list_images(cfg.masks, "mask images") if cfg.masks else None
    return MaskSource(cfg.size, paths, cfg.mask_kind, cfg.mask_invert, cfg.mask_threshold, cfg.hole_ratio,
                      paired=paired, required=required)


def _worker_ignores_stop_signals(_worker_id: int) -> None:
    """Leave SIGINT/SIGTERM to the main process, which stops the run and then the workers.

    A Ctrl-C or ``kill -- -PGID`` reaches every process of the group. A worker killed by it made
    the DataLoader raise "worker ... is killed by signal" inside the main process, even in the
    middle of writing the final checkpoint.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def build_train_loader(cfg, rank: int = 0, world_size: int = 1, start_iteration: int = 0):
    """The endless training DataLoader (per-rank batch ``cfg.batch``), positioned at ``start_iteration``."""
    dataset = InpaintDataset(list_images(cfg.data, "training images"), build_mask_source(cfg), cfg.size,
                             seed=cfg.seed, augment=True)
    sampler = ResumableSampler(len(dataset), cfg.seed, rank, world_size, start=start_iteration * cfg.batch)
    return torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch, sampler=sampler, num_workers=cfg.workers, drop_last=False,
        pin_memory=torch.cuda.is_available(), persistent_workers=cfg.workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed), worker_init_fn=_worker_ignores_stop_signals,
    ), dataset


def build_val_loader(cfg):
    """Validation: no flip, mask ``i`` (file or fixed-seed procedural) for image ``i``; at most ``cfg.val_max`` images."""
    paths = list_images(cfg.val, "validation images")[: cfg.val_max]
    masks = build_mask_source(cfg, paired=True, required=len(paths))
    dataset = InpaintDataset(paths, masks, cfg.size, seed=cfg.seed + 1, augment=False)
    return torch.utils.data.DataLoader(dataset, batch_size=cfg.batch, shuffle=False, num_workers=0)
