"""Planning ``ec-inpaint``'s work: which image goes with which mask and where each result goes.

Everything that can be refused is refused here, before a model loads or a pixel is written:

* missing inputs, a MASK directory that is the INPUT directory, two masks for one image stem;
* two inputs that would write the same output (``x.jpg`` and ``x.png`` both give ``x.png``);
* an output that is an input image or a mask (``-o`` pointing at the input directory);
* outputs that already exist, unless ``overwrite`` is set (then they are replaced atomically);
* an output format that cannot be written, an output location that is not a directory, cannot
  be created, or is not writable (checked by creating and removing a probe file).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ec_runtime.errors import InputError, OutputError
from ec_runtime.imageio import IMAGE_SUFFIXES, list_images

SHOWN = 3  # how many offending paths a message lists


@dataclass(frozen=True)
class Job:
    """One image to inpaint: its mask and the file(s) it writes."""

    image: Path
    mask: Path
    output: Path
    edges: Path | None = None  # --save-edges

    def outputs(self) -> list[Path]:
        return [self.output] + ([self.edges] if self.edges else [])


def _key(path: Path) -> str:
    """A comparable identity for a path that may not exist yet (resolved, case kept)."""
    return os.path.normcase(str(path.resolve()))


def _listing(paths, more_than: int = SHOWN) -> str:
    paths = [str(p) for p in paths]
    head = ", ".join(paths[:more_than])
    return head + (f" and {len(paths) - more_than} more" if len(paths) > more_than else "")


def _listed(directory: Path, what: str) -> list[Path]:
    try:
        return list_images(directory)
    except OSError as exc:
        raise InputError(f"{directory}: cannot list the {what} directory ({exc.strerror or exc})") from None


def _masks_by_stem(mask_dir: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for p in _listed(mask_dir, "mask"):
        found.setdefault(p.stem, []).append(p)
    return found


def _pairs(input_path: Path, mask_path: Path) -> list[tuple[Path, Path]]:
    if not input_path.exists():
        raise InputError(f"{input_path}: no such file or directory")
    if not mask_path.exists():
        raise InputError(f"{mask_path}: no such file or directory (--mask)")
    for path, what in ((input_path, "INPUT"), (mask_path, "--mask")):
        if not (path.is_file() or path.is_dir()):  # a device, FIFO or socket could block or never end
            raise InputError(f"{path}: not a regular file or directory ({what})")
    if input_path.is_file():
        images = [input_path]
    else:
        if mask_path.is_dir() and _key(mask_path) == _key(input_path):
            raise InputError(f"{mask_path}: the mask directory is the input directory; keep masks in their own "
                             "directory (matched to images by file stem)")
        images = [p for p in _listed(input_path, "input") if not (mask_path.is_file() and p.samefile(mask_path))]
        if not images:
            raise InputError(f"{input_path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    if not mask_path.is_dir():
        return [(image, mask_path) for image in images]
    masks = _masks_by_stem(mask_path)
    doubled = [m for image in images for m in masks.get(image.stem, [])[1:2]]
    if doubled:
        names = [" and ".join(p.name for p in masks[m.stem]) for m in doubled]
        raise InputError(f"{mask_path}: more than one mask for the same image stem ({_listing(names)}); "
                         "keep one mask per image")
    if input_path.is_file() and input_path.stem not in masks:
        raise InputError(f"{mask_path}: no mask named {input_path.stem}.* for {input_path}")
    # an image without a mask fails on its own later (the batch goes on), naming the expected file
    return [(image, masks.get(image.stem, [mask_path / f"{image.stem}.png"])[0]) for image in images]


def _output_for(image: Path, output: Path, single: bool) -> Path:
    if single and not (output.is_dir() or not output.suffix):
        return output
    return output / f"{image.stem}.png"


def _nearest_existing(directory: Path) -> Path:
    for parent in [directory, *directory.parents]:
        if parent.exists():
            return parent
    return Path(".")


def check_output_dir(directory: Path, create: bool) -> None:
    """:class:`OutputError` unless ``directory`` is (or can be created as) a writable directory.

    Without ``create`` only the nearest existing ancestor is checked (nothing is created); with it
    the directory is created and proven writable with a probe file that is removed again.
    """
    base = _nearest_existing(directory)
    if not base.is_dir():
        raise OutputError(f"{directory}: cannot create the output directory, {base} exists and is not a "
                          "directory")
    if not create:
        if not os.access(base, os.W_OK | os.X_OK):
            raise OutputError(f"{directory}: the output location is not writable ({base} is read-only for this user)")
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".ec-inpaint-probe-{secrets.token_hex(4)}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{directory}: the output location is not writable ({exc.strerror or exc})") from exc


def plan_jobs(input_path: Path, mask_path: Path, output: Path, *, overwrite: bool = False,
              save_edges: bool = False, create: bool = False) -> list[Job]:
    """The jobs for ``ec-inpaint INPUT --mask MASK -o OUTPUT``, or :class:`InputError` /
    :class:`OutputError` for anything that would lose data or fail later (see the module docstring).

    With ``create`` the output directories are created and probed for writability; without it
    they are only checked (the CLI creates them once the model has loaded).
    """
    input_path, mask_path, output = Path(input_path), Path(mask_path), Path(output)
    pairs = _pairs(input_path, mask_path)
    single = input_path.is_file()
    if not single and output.exists() and not output.is_dir():
        raise InputError(f"{output}: INPUT is a directory, so -o must be a directory")
    jobs = []
    for image, mask in pairs:
        out = _output_for(image, output, single)
        if out.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{out}: unsupported output format {out.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
        edges = out.with_name(f"{out.stem}_edges.png") if save_edges else None
        jobs.append(Job(image, mask, out, edges))

    inputs = {_key(p): p for image, mask in pairs for p in (image, mask) if p.exists()}
    seen: dict[str, Job] = {}
    clashes, onto_inputs, existing = [], [], []
    for job in jobs:
        for out in job.outputs():
            key = _key(out)
            if key in seen:
                clashes.append(f"{seen[key].image.name} and {job.image.name} -> {out}")
            seen[key] = job
            if key in inputs or any(out.exists() and out.samefile(p) for p in (job.image, job.mask)):
                onto_inputs.append(out)
            elif out.is_dir():
                raise OutputError(f"{out}: the output is an existing directory")
            elif out.exists() and not out.is_file():
                raise OutputError(f"{out}: exists and is not a regular file (a device, FIFO or socket); "
                                  "choose another -o")
            elif out.exists() or out.is_symlink():
                existing.append(out)
    if clashes:
        raise InputError(f"two inputs would write the same output ({_listing(clashes)}); rename one of them or "
                         "inpaint them into separate -o directories. Nothing was written")
    if onto_inputs:
        raise InputError(f"refusing to overwrite input files ({_listing(onto_inputs)}); choose another -o. "
                         "Nothing was written")
    if existing and not overwrite:
        raise OutputError(f"output files already exist ({_listing(existing)}); pass --overwrite to replace them "
                          "or choose another -o. Nothing was written")
    for directory in sorted({j.output.parent for j in jobs}):
        check_output_dir(directory, create)
    return jobs
