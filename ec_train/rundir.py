"""The run folder (``--out``) of ``ec-train``: its checkpoints, and whether a new run may use it.

Torch-free, so ``ec-train`` checks its outputs before torch loads. A run folder that already holds
a run (checkpoints or ``config.yml``) is refused without ``--resume``: a fresh run there would mix
its checkpoints with the old ones, and ``--keep-last`` pruning (newest iterations kept) would delete
the new run's checkpoints as soon as they are written.
"""

from __future__ import annotations

import re
from pathlib import Path

from ec_train.errors import ConfigError, OutputError
from ec_train.files import check_writable_dir

CHECKPOINT_PATTERN = re.compile(r"^ckpt_(\d{8,})\.pth$")


def checkpoint_path(out: Path, iteration: int) -> Path:
    """``out/checkpoints/ckpt_<iteration>.pth``."""
    return Path(out) / "checkpoints" / f"ckpt_{iteration:08d}.pth"


def checkpoint_iteration(path: Path) -> int | None:
    """The iteration in a checkpoint file name, or None for other names."""
    m = CHECKPOINT_PATTERN.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temp files of interrupted writes are ignored)."""
    folder = Path(out) / "checkpoints"
    found = [p for p in folder.glob("ckpt_*.pth") if CHECKPOINT_PATTERN.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=checkpoint_iteration)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint of the run in ``out``, or None."""
    found = list_checkpoints(out)
    return found[-1] if found else None


def check_run_folder(out: str | Path, resume: str | None, export_official: str | None = None) -> None:
    """Refuse, before any work, an unwritable ``--out`` (or ``--export-official``) and a used run folder
    without ``--resume``."""
    out = Path(out)
    for path, option in ((out, "--out"), (export_official, "--export-official")):
        if path is not None:
            try:
                check_writable_dir(path, option)
            except OutputError as exc:
                raise ConfigError(str(exc)) from None
    if resume is not None or not out.is_dir():
        return
    latest = latest_checkpoint(out)
    if latest is not None or (out / "config.yml").is_file():
        what = f"checkpoints up to {latest.name}" if latest else "config.yml"
        raise ConfigError(f"--out {out} already holds a run ({what}); continue it with --resume, or choose a new "
                          "--out folder (a new run there would mix its checkpoints with the old ones)")


def check_resume_point(out: Path, iteration: int, source: str) -> None:
    """Refuse resuming at ``iteration`` into a run folder that holds newer checkpoints (another timeline)."""
    newer = [p for p in list_checkpoints(out) if checkpoint_iteration(p) > iteration]
    if newer:
        raise ConfigError(f"--out {out} holds {newer[-1].name}, newer than {source} (iteration {iteration}); "
                          "resuming there would mix two runs and --keep-last would delete the new checkpoints. "
                          "Resume into a new --out folder, or move the newer checkpoints away")
