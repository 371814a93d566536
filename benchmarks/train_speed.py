"""Training speed of ec-train on this machine: iterations/s for each mode and model variant.

Times ``Trainer.train_step`` (Canny on the training device, both discriminators, VGG19 perceptual
and style losses with randomly initialised VGG19 weights, which cost the same as the ImageNet
ones) on a fixed batch of real photos, after warm-up steps. Data loading is not included.

    python -m benchmarks.train_speed                       # 256x256, batch 4, all modes, both variants
    python -m benchmarks.train_speed --variants lite --steps 5
    python -m benchmarks.train_speed --compare --variants lite --modes inpaint --size 128 --batch 8

``--compare`` times the discriminator choices of one recipe against each other, interleaved
(one step of each case per round, so a change in machine load hits every case alike), in CPU
seconds (load-independent) and wall seconds, with each case's CPU time relative to the first: the paper-size 64-channel discriminators, the
variant's own width (``lite``: 32 channels) and, for the inpaint stage, no discriminator at all
(``--adv-weight 0``). It runs without VGG19 (``--vgg-weights none``, the demo model's recipe).
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


def _trainer(mode: str, variant: str, size: int, batch: int, dis_channels: int | None, adv_weight: float,
             vgg: bool):
    """A Trainer for one case; ``dis_channels`` replaces the variant's discriminator width."""
    import torch

    from ec_train.config import TrainConfig
    from ec_train.networks import Discriminator
    from ec_train.trainer import ED, ID, Trainer
    from ec_train.vgg import VGG19Features

    cfg = TrainConfig(mode=mode, data="-", variant=variant, size=size, batch=batch, workers=0,
                      inpaint_adv_weight=adv_weight)
    trainer = Trainer(cfg, torch.device("cpu"), vgg=VGG19Features() if vgg and cfg.trains_inpaint else None)
    if dis_channels is not None:
        for key, cin in ((ED, 2), (ID, 3)):
            trainer.models[key] = trainer.wrapped[key] = Discriminator(cin, base_channels=dis_channels)
            if key in trainer.optimizers:
                trainer.optimizers[key] = torch.optim.Adam(trainer.models[key].parameters(), lr=cfg.lr * cfg.d2g_lr,
                                                           betas=(cfg.beta1, cfg.beta2))
    return trainer


def compare_discriminators(mode: str, variant: str, size: int, batch: int, rounds: int,
                           warmup: int) -> list[tuple[str, list, list]]:
    """Interleaved (wall seconds, CPU seconds) per step of the discriminator choices for one mode and variant.

    CPU seconds (this process, all threads) hardly depend on what else runs on the machine.
    """
    from ec_train.registry import get_variant

    own = get_variant(variant).discriminator_channels
    cases = [("paper-size discriminators (64 ch)", 64, 0.1), (f"{variant} discriminators ({own} ch)", None, 0.1)]
    if mode != "edge":
        cases.append(("no inpaint discriminator (--adv-weight 0)", None, 0.0))
    trainers = [_trainer(mode, variant, size, batch, ch, adv, vgg=False) for _, ch, adv in cases]
    data = _batch(size, batch)
    for t in trainers:
        for _ in range(warmup):
            t.train_step(data)
    times = [[] for _ in cases]
    cpu = [[] for _ in cases]
    for _ in range(rounds):
        for i, t in enumerate(trainers):
            t0, c0 = time.perf_counter(), time.process_time()
            t.train_step(data)
            times[i].append(time.perf_counter() - t0)
            cpu[i].append(time.process_time() - c0)
    return [(name, ts, cs) for (name, _, _), ts, cs in zip(cases, times, cpu)]


def _write_compare(out, size, batch, rounds, warmup, command, env, load_before, results) -> None:
    import statistics

    import torch

    from benchmarks.environment import environment_markdown

    load_now = os.getloadavg()
    lines = [f"# ec-train speed by discriminator width: {size}x{size}, batch {batch}, CPU", "",
             f"Command: `{command.strip()}`", "", environment_markdown(env),
             f"- torch threads: {torch.get_num_threads()}; 1-minute load average {load_before[0]:.1f} at the start, "
             f"{load_now[0]:.1f} at the end (other processes slow every case alike: the cases are interleaved)", "",
             f"`Trainer.train_step` without VGG19 (the demo recipe), fp32, {warmup} warm-up step(s) per case, then "
             f"{rounds} round(s) of one step per case.", "",
             "CPU s/it is the process's CPU time per step (all threads). With one torch thread it counts work "
             "only, whatever else runs (with more, idle OpenMP threads spin and a loaded machine inflates it); "
             "wall s/it is what a run sees on this machine at this load.", "",
             "| variant | mode | discriminators | CPU s/it (median) | relative CPU | wall s/it (median) | "
             "wall s/it (min-max) |",
             "|---|---|---|---|---|---|---|"]
    for (variant, mode), rows in results.items():
        base = statistics.median(rows[0][2])
        for name, ts, cs in rows:
            med, cmed = statistics.median(ts), statistics.median(cs)
            lines.append(f"| {variant} | {mode} | {name} | {cmed:.2f} | {cmed / base:.2f}x | {med:.2f} | "
                         f"{min(ts):.2f}-{max(ts):.2f} |")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines) + "\n")


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
@click.option("--out", default=None, help="Markdown file  [default: benchmarks/results/train_speed.md, "
                                          "with --compare train_speed_discriminators.md]")
@click.option("--compare", is_flag=True, help="Compare discriminator widths (interleaved; --steps = rounds).")
@click.option("--threads", type=int, default=None,
              help="torch threads (default: torch's choice). 1 makes CPU seconds count work only: idle "
                   "OpenMP threads spin, and on a loaded machine that spinning shows up as CPU time.")
def main(size, batch, steps, warmup, variants, modes, out, compare, threads):
    """Record ec-train iterations/s per mode at SIZE x SIZE, batch BATCH, into a Markdown file."""
    import statistics

    if threads:
        import torch

        torch.set_num_threads(threads)

    from benchmarks.environment import environment

    env = environment()
    load_before = os.getloadavg()
    command = "python -m benchmarks.train_speed " + " ".join(sys.argv[1:])
    if compare:
        out = out or "benchmarks/results/train_speed_discriminators.md"
        results = {}
        for variant in variants.split(","):
            for mode in modes.split(","):
                rows = compare_discriminators(mode, variant, size, batch, steps, warmup)
                results[(variant, mode)] = rows
                base = statistics.median(rows[0][2])
                for name, ts, cs in rows:
                    med, cmed = statistics.median(ts), statistics.median(cs)
                    print(f"{variant:12s} {mode:13s} {name:45s} CPU {cmed:6.2f} s/it ({cmed / base:.2f}x), "
                          f"wall {med:6.2f} s/it", flush=True)
                _write_compare(out, size, batch, steps, warmup, command, env, load_before, results)
        print(f"wrote {out}")
        return
    out = out or "benchmarks/results/train_speed.md"
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
