"""Training speed of ec-train on this machine: iterations/s for each mode and model variant.

Times ``Trainer.train_step`` (Canny on the training device, both discriminators, VGG19 perceptual
and style losses with randomly initialised VGG19 weights, which cost the same as the ImageNet
ones) on a fixed batch of real photos, after warm-up steps. Data loading is not included.

    python -m benchmarks.train_speed                       # 256x256, batch 4, all modes, both variants
    python -m benchmarks.train_speed --variants lite --steps 5
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click


def _batch(size: int, batch: int):
    import numpy as np
    import torch

    from ec_train.masks import free_form_mask
    from ec_train.samples import SAMPLE_PHOTOS, sample_photo

    rng = np.random.default_rng(0)
    images = torch.stack([torch.from_numpy(sample_photo(SAMPLE_PHOTOS[i % len(SAMPLE_PHOTOS)], size)).permute(2, 0, 1)
                          for i in range(batch)]).float() / 255
    masks = torch.stack([torch.from_numpy(free_form_mask(size, size, rng)).float()[None] for _ in range(batch)])
    return {"image": images, "mask": masks}


def measure(mode: str, variant: str, size: int, batch: int, steps: int, warmup: int) -> dict:
    """Seconds per iteration (each timed step) for one mode and variant."""
    import torch

    from ec_train.config import TrainConfig
    from ec_train.trainer import Trainer
    from ec_train.vgg import VGG19Features

    cfg = TrainConfig(mode=mode, data="-", variant=variant, size=size, batch=batch, workers=0)
    vgg = VGG19Features() if cfg.trains_inpaint else None
    trainer = Trainer(cfg, torch.device("cpu"), vgg=vgg)
    data = _batch(size, batch)
    for _ in range(warmup):
        trainer.train_step(data)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step(data)
        times.append(time.perf_counter() - t0)
    return {"mode": mode, "variant": variant, "seconds": times}


def _write(out, size, batch, steps, warmup, command, env, load_before, cases, rows) -> None:
    import torch

    from benchmarks.environment import environment_markdown

    load_now = os.getloadavg()
    lines = [
        f"# ec-train speed: {size}x{size}, batch {batch}, CPU", "",
        f"Command: `{command.strip()}`", "",
        environment_markdown(env),
        f"- torch threads: {torch.get_num_threads()}; 1-minute load average {load_before[0]:.1f} at the start, "
        f"{load_now[0]:.1f} at the last case (other processes on the machine slow the numbers down)",
        "",
        f"`Trainer.train_step` only (Canny, generators, discriminators, all losses incl. VGG19 for the inpaint "
        f"stage, optimizer steps), fp32, {warmup} warm-up step(s), median of {steps} timed step(s).", "",
        "| variant | mode | it/s | s/it (median) | s/it (min-max) | images/s |",
        "|---|---|---|---|---|---|",
    ]
    for variant, mode in cases:
        if (variant, mode) in rows:
            med, lo, hi = rows[(variant, mode)]
            lines.append(f"| {variant} | {mode} | {1 / med:.3f} | {med:.2f} | {lo:.2f}-{hi:.2f} | {batch / med:.2f} |")
        else:
            lines.append(f"| {variant} | {mode} | not measured (run stopped before this case) | | | |")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines) + "\n")


@click.command()
@click.option("--size", default=256, show_default=True)
@click.option("--batch", default=4, show_default=True)
@click.option("--steps", default=3, show_default=True, help="Timed steps per case.")
@click.option("--warmup", default=1, show_default=True)
@click.option("--variants", default="edgeconnect,lite", show_default=True)
@click.option("--modes", default="edge,inpaint,edge-inpaint,joint", show_default=True)
@click.option("--out", default="benchmarks/results/train_speed.md", show_default=True)
def main(size, batch, steps, warmup, variants, modes, out):
    """Record ec-train iterations/s per mode at SIZE x SIZE, batch BATCH, into a Markdown file."""
    import statistics

    from benchmarks.environment import environment

    env = environment()
    load_before = os.getloadavg()
    command = "python -m benchmarks.train_speed " + " ".join(sys.argv[1:])
    cases = [(v, m) for v in variants.split(",") for m in modes.split(",")]
    rows: dict[tuple[str, str], tuple[float, float, float]] = {}
    for variant, mode in cases:
        r = measure(mode, variant, size, batch, steps, warmup)
        med = statistics.median(r["seconds"])
        rows[(variant, mode)] = (med, min(r["seconds"]), max(r["seconds"]))
        print(f"{variant:12s} {mode:13s} {1 / med:8.3f} it/s  ({med:.2f} s/it)", flush=True)
        # rewritten after every case, so an interrupted run keeps what it measured
        _write(out, size, batch, steps, warmup, command, env, load_before, cases, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
