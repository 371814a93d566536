"""Finding the (edge, inpaint) generator pair in what the user passes to ``ec-export``.

Accepted: one training checkpoint of ours (``format == TRAIN_FORMAT``) holding both generators;
the official ``EdgeModel_gen.pth`` + ``InpaintingModel_gen.pth`` (any two files holding one edge
and one inpaint generator); or a directory holding either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ec_export.errors import ExportError
from ec_runtime.tensorrt_support import sha256_file


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    from ec_train.checkpoints import OFFICIAL_FILES

    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        official = [folder / name for name in OFFICIAL_FILES.values()]
        if all(p.is_file() for p in official):
            return official
        checkpoints = sorted(folder.glob("*.pth")) + sorted(folder.glob("*.pt"))
        if len(checkpoints) == 1:
            return checkpoints
        raise ExportError(f"{folder} holds neither {' + '.join(OFFICIAL_FILES.values())} nor a single training "
                          f"checkpoint (found: {', '.join(p.name for p in checkpoints) or 'no .pth files'})")
    for p in paths:
        if not p.exists():
            raise ExportError(f"checkpoint not found: {p}")
        if p.is_dir():
            raise ExportError(f"{p} is a directory; pass either one directory or checkpoint files")
    return paths


def load_generator_pair(paths: Sequence[str | Path]):
    """``(edge, inpaint, source)`` from checkpoint paths; ``source`` is the ``export.json`` entry.

    Raises :class:`ExportError` (or :class:`ec_train.errors.CheckpointError`) for a wrong or
    mismatched pair: two files of the same kind, generators of different architectures, or a file
    that is not an EdgeConnect checkpoint.
    """
    from ec_train.checkpoints import TRAIN_FORMAT, generator_architecture, load_generator, read_checkpoint

    files = _expand(paths)
    if not files or len(files) > 2:
        raise ExportError(f"expected one training checkpoint or an edge + inpaint pair, got {len(files)} files")
    if len(files) == 1:
        obj = read_checkpoint(files[0])
        if obj.get("format") != TRAIN_FORMAT:
            raise ExportError(f"{files[0]} holds a single network; pass it together with the other generator "
                              "(EdgeModel_gen.pth + InpaintingModel_gen.pth) or pass a training checkpoint")
        del obj
        edge, inpaint = load_generator(files[0], "edge"), load_generator(files[0], "inpaint")
    else:
        models = [load_generator(p) for p in files]
        kinds = [generator_architecture(m.state_dict())["kind"] for m in models]
        if sorted(kinds) != ["edge", "inpaint"]:
            raise ExportError(f"expected one edge and one inpaint generator, got {kinds[0]} ({files[0].name}) and "
                              f"{kinds[1]} ({files[1].name})")
        edge, inpaint = models if kinds[0] == "edge" else models[::-1]
    a, b = (generator_architecture(m.state_dict()) for m in (edge, inpaint))
    for key in ("base_channels", "residual_blocks"):
        if a[key] != b[key]:
            raise ExportError(f"the edge and inpaint generators do not belong together: {key} {a[key]} "
                              f"({files[0].name}) vs {b[key]} ({files[-1].name})")
    # absolute paths: ec-bench finds the checkpoints for its torch baseline from any folder
    source = {"checkpoints": [{"path": str(p.absolute()), "sha256": sha256_file(p)} for p in files]}
    return edge, inpaint, source
