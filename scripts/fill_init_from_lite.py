"""Turn a ``lite`` checkpoint into a starting point for the ``lite-fill`` variant.

    python scripts/fill_init_from_lite.py training-runs/B/ckpt_00001040.compact.pth fill_init.pth
    ec-train edge-inpaint --variant lite-fill --init fill_init.pth ...

The edge generator is copied unchanged. The inpaint generator's first conv gains a fifth input
(the mask) with zero weights, so its RGB and edge filters now see the coarse fill where they saw
white holes, and its last conv is zeroed, so the converted network starts out returning the
coarse fill exactly (see ``ec_train.networks.FillInpaintGenerator``). Every other weight is kept:
the encoder's and decoder's features carry over instead of starting from noise.
"""

from __future__ import annotations

import argparse

import torch

from ec_train.checkpoints import MODEL_KEYS, TRAIN_FORMAT, atomic_save, extract_state_dict, read_checkpoint


def convert(source: str, target: str) -> None:
    obj = read_checkpoint(source)
    edge = extract_state_dict(obj, "edge", source)
    inpaint = {k: v.float() for k, v in extract_state_dict(obj, "inpaint", source).items()}
    first = inpaint["encoder.1.weight"]
    if first.shape[1] != 4:
        raise SystemExit(f"{source}: the inpaint generator takes {first.shape[1]} channels, expected the 4 of lite")
    inpaint["encoder.1.weight"] = torch.cat([first, torch.zeros_like(first[:, :1])], dim=1)
    inpaint["decoder.7.weight"] = torch.zeros_like(inpaint["decoder.7.weight"])
    inpaint["decoder.7.bias"] = torch.zeros_like(inpaint["decoder.7.bias"])
    atomic_save({"format": TRAIN_FORMAT, "iteration": 0, "note": f"lite-fill init converted from {source}",
                 "models": {MODEL_KEYS["edge"]: {k: v.float() for k, v in edge.items()},
                            MODEL_KEYS["inpaint"]: inpaint}}, target)
    print(f"wrote {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a lite checkpoint (ours or compact) holding both generators")
    parser.add_argument("target", help="the lite-fill init checkpoint to write")
    args = parser.parse_args()
    convert(args.source, args.target)


if __name__ == "__main__":
    main()
