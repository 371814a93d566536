"""Shrink an ec-train checkpoint so it can be committed, shipped or copied off a machine cheaply.

    python scripts/compact_checkpoint.py runs/inp/checkpoints/ckpt_00002000.pth small.pth
    python scripts/compact_checkpoint.py CKPT small.pth --keep discriminators --dtype fp32

By default the result holds the two generators only, stored as fp16 (a lite training checkpoint
goes from 28.6 MiB to 5.8 MiB). It is still an ec-train checkpoint: ``ec-train ... --init
small.pth`` starts a run from its generators (the discriminators and optimizers start afresh)
and ``ec-export export small.pth`` exports it. It can no longer be resumed exactly with
``--resume``: that needs the optimizer state, which is what takes the room.

``--keep discriminators`` also keeps the discriminators' weights (optimizer state is always
dropped); ``--dtype fp32`` keeps full precision (twice the size of fp16).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ec_train.checkpoints import TRAIN_FORMAT, atomic_save, read_checkpoint  # noqa: E402
from ec_train.errors import EcError  # noqa: E402

GENERATORS = ("edge_generator", "inpaint_generator")
DISCRIMINATORS = ("edge_discriminator", "inpaint_discriminator")


def compact(state: dict, keep_discriminators: bool = False, dtype: str = "fp16") -> dict:
    """The compacted checkpoint dict: weights of the kept networks, iteration and config; no optimizers."""
    if state.get("format") != TRAIN_FORMAT:
        raise EcError(f"not an ec-train checkpoint (format {state.get('format')!r})")
    keep = GENERATORS + (DISCRIMINATORS if keep_discriminators else ())
    cast = torch.float16 if dtype == "fp16" else torch.float32
    models = {name: {k: (v.to(cast) if v.is_floating_point() else v) for k, v in sd.items()}
              for name, sd in state["models"].items() if name in keep}
    return {"format": TRAIN_FORMAT, "toolkit_version": state.get("toolkit_version"),
            "iteration": state.get("iteration"), "config": state.get("config", {}), "models": models,
            "note": f"compacted: {', '.join(models)} as {dtype}, no optimizer state (use --init, not --resume)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="an ec-train checkpoint (ckpt_*.pth)")
    parser.add_argument("out", type=Path, help="where to write the compact checkpoint")
    parser.add_argument("--keep", choices=("generators", "discriminators"), default="generators",
                        help="generators only (default), or the discriminators' weights as well")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16", help="storage precision (default fp16)")
    args = parser.parse_args(argv)
    try:
        small = compact(read_checkpoint(args.checkpoint), args.keep == "discriminators", args.dtype)
    except EcError as exc:
        print(f"error: {args.checkpoint}: {exc}", file=sys.stderr)
        return 1
    atomic_save(small, args.out)
    before, after = args.checkpoint.stat().st_size, args.out.stat().st_size
    print(f"{args.out}: {after / 2**20:.1f} MiB (from {before / 2**20:.1f} MiB; {', '.join(small['models'])}, "
          f"{args.dtype}, iteration {small['iteration']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
