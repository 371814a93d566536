"""The training driver: ``main(cfg)``, ``evaluate``, checkpoints, samples and logging.

Laid out like torchvision's ``references/`` scripts. Run it through the ``ec-train`` CLI
(:mod:`ec_train.cli`), or under ``torchrun`` for DistributedDataParallel::

    torchrun --nproc_per_node=4 -m ec_train.cli joint --data ... --out ...
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ec_train.checkpoints import atomic_save, read_checkpoint, save_official
from ec_train.config import TrainConfig, write_yaml_config
from ec_train.distributed import DistInfo, cleanup, init_distributed
from ec_train.errors import CheckpointError, ConfigError, TrainingError
from ec_train.rundir import (CHECKPOINT_PATTERN, check_resume_point, check_run_folder,  # noqa: F401 (re-exported)
                             checkpoint_iteration, checkpoint_path, latest_checkpoint, list_checkpoints)
from ec_train.trainer import EG, IG, Trainer, edge_accuracy

# ------------------------------------------------------------------ checkpoints
def save_checkpoint(trainer: Trainer, out: Path, keep_last: int) -> Path:
    """Atomically write ``checkpoints/ckpt_<iteration>.pth`` and delete all but the newest ``keep_last``.

    The checkpoint just written is never among the deleted ones, and neither is any newer one
    (which only another run can have written; :func:`check_run_folder` refuses that case).
    """
    path = atomic_save(trainer.state_dict(), checkpoint_path(out, trainer.iteration))
    older = [p for p in list_checkpoints(out) if p != path and checkpoint_iteration(p) < trainer.iteration]
    for old in older[:max(0, len(older) - (keep_last - 1))]:
        old.unlink(missing_ok=True)
    return path


def resolve_resume(spec: str, out: Path) -> Path:
    """``--resume latest`` (or a bare ``--resume``) -> newest checkpoint under ``out``; else the given file."""
    if spec in ("latest", "auto", ""):
        path = latest_checkpoint(out)
        if path is None:
            raise CheckpointError(f"--resume: no checkpoint in {out / 'checkpoints'} to resume from")
        return path
    return Path(spec)


def export_official(trainer: Trainer, out_dir: str | Path) -> list[Path]:
    """``EdgeModel_gen.pth`` / ``InpaintingModel_gen.pth`` for the networks this mode trains or uses."""
    mode = trainer.cfg.mode
    edge = trainer.models[EG] if mode != "inpaint" else None
    inpaint = trainer.models[IG] if mode != "edge" else None
    return save_official(edge, inpaint, out_dir, trainer.iteration)


# ------------------------------------------------------------------ samples and metrics
def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def sample_grid(trainer: Trainer, vis: dict, max_rows: int = 4) -> np.ndarray:
    """uint8 HxWx3 grid, one row per image: masked input | edges | output (merged) | ground truth."""
    images, masks, edges = vis["images"][:max_rows], vis["masks"][:max_rows], vis["edges"][:max_rows]
    if trainer.cfg.mode == "edge":
        from ec_train.networks import rgb_to_gray

        gray = rgb_to_gray(images)
        e_out = vis["edge_out"][:max_rows]
        cols = [gray * (1 - masks) + masks, edges * (1 - masks), e_out * masks + edges * (1 - masks), edges]
    else:
        out = vis["inpaint_out"][:max_rows]
        cols = [images * (1 - masks) + masks, vis["stage2_edges"][:max_rows], out * masks + images * (1 - masks), images]
    grid = torch.cat([torch.cat([_rgb(c.float()) for c in cols], dim=3)[i] for i in range(images.shape[0])], dim=1)
    return (grid.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def write_samples(trainer: Trainer, vis: dict, out: Path, writer=None, tag: str = "train") -> Path:
    import cv2

    grid = sample_grid(trainer, vis, trainer.cfg.sample_size)
    path = out / "samples" / f"{tag}_{trainer.iteration:08d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if writer is not None:
        writer.add_image(f"samples/{tag}", grid, trainer.iteration, dataformats="HWC")
    return path


@torch.no_grad()
def evaluate(trainer: Trainer, loader) -> dict[str, float]:
    """Validation metrics: PSNR, SSIM and L1 of the merged image; edge precision/recall in the hole."""
    from skimage.metrics import structural_similarity

    for m in trainer.models.values():
        m.eval()
    sums: dict[str, float] = {}
    count = 0
    vis = None
    try:
        for batch in loader:
            images, gray, edges, masks = trainer.prepare(batch, iteration=0)
            with trainer.autocast():
                e_out, i_out, stage2 = trainer.generate(images, gray, edges, masks, train=False)
            n = images.shape[0]
            metrics: dict[str, float] = {}
            if e_out is not None:
                p, r = zip(*(edge_accuracy(e_out[i:i + 1].float(), edges[i:i + 1], masks[i:i + 1],
                                           trainer.cfg.edge_threshold) for i in range(n)))
                metrics["precision"], metrics["recall"] = float(sum(p)), float(sum(r))
            if i_out is not None:
                merged = (i_out.float() * masks + images * (1 - masks)).clamp(0, 1)
                mse = ((merged - images) ** 2).flatten(1).mean(1)
                metrics["psnr"] = float((10 * torch.log10(1 / mse.clamp_min(1e-10))).sum())
                metrics["l1"] = float((merged - images).abs().flatten(1).mean(1).sum())
                a, b = merged.permute(0, 2, 3, 1).cpu().numpy(), images.permute(0, 2, 3, 1).cpu().numpy()
                metrics["ssim"] = float(sum(structural_similarity(a[i], b[i], channel_axis=2, data_range=1.0)
                                            for i in range(n)))
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            count += n
            if vis is None:
                vis = {"images": images, "masks": masks, "edges": edges, "stage2_edges": stage2,
                       "edge_out": e_out, "inpaint_out": i_out}
    finally:
        for key, m in trainer.models.items():
            m.train(key in trainer.trained)
    result = {k: v / max(count, 1) for k, v in sums.items()}
    result["_vis"] = vis
    return result


# ------------------------------------------------------------------ main
def resolve_device(spec: str, dist: DistInfo | None = None) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA GPU")
    if spec == "cuda" and dist is not None and dist.enabled:
        return torch.device("cuda", dist.local_rank)
    return torch.device(spec)


def build_vgg(cfg: TrainConfig):
    """The VGG19 for perceptual/style losses, or None (edge mode, or the explicit ``none`` opt-out)."""
    if not cfg.trains_inpaint:
        return None
    from ec_train.vgg import load_vgg19, resolve_vgg_weights

    path = resolve_vgg_weights(cfg.vgg_weights)
    return None if path is None else load_vgg19(path)


def _log(msg: str, dist: DistInfo) -> None:
    if dist.is_main:
        print(msg, flush=True)


def main(cfg: TrainConfig, resume: str | None = None) -> dict:
    """Train as ``cfg`` says. Returns a summary (iteration, last checkpoint, last metrics, the trainer).

    Checkpoints are written every ``save_every`` iterations and at exit, including Ctrl-C; a
    NaN/inf loss stops training with :class:`TrainingError` and leaves the last good checkpoint.
    """
    cfg.validate()
    out = Path(cfg.out)
    if _launch_rank() == 0:  # other ranks would race with rank 0 creating the run folder
        check_run_folder(out, resume, cfg.export_official)
    device_type = "cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    dist = init_distributed(device_type if cfg.device != "cpu" else "cpu")
    previous = _stop_signals_interrupt()
    try:
        return _run(cfg, resume, out, dist)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        cleanup()


def _launch_rank() -> int:
    """This process's rank as torchrun sets it (0 when not launched by torchrun)."""
    import os

    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_signals_interrupt() -> dict:
    """Make SIGTERM (schedulers, ``kill``) and SIGINT (even when a background shell ignored it)
    stop training like Ctrl-C, so the final checkpoint is written. Returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, _raise_interrupt)
    return previous


def _run(cfg: TrainConfig, resume: str | None, out: Path, dist: DistInfo) -> dict:
    from tqdm import tqdm

    from ec_train.data import build_train_loader, build_val_loader

    device = resolve_device(cfg.device, dist)
    vgg = build_vgg(cfg)  # stops here, before any training, when the weights are missing
    state = None
    if resume is not None:
        path = resolve_resume(resume, out)
        state = read_checkpoint(path)
    trainer = Trainer(cfg, device, dist, vgg)
    if state is not None:
        check_resume_point(out, int(state.get("iteration", 0)), str(path))
        trainer.load_state_dict(state, source=str(path))
        _log(f"resumed from {path} at iteration {trainer.iteration}", dist)
    elif cfg.init:
        for line in trainer.load_init(cfg.init):
            _log(f"init: {line}", dist)
    trainer.warn_if_edge_untrained()
    trainer.wrap_ddp()
    loader, dataset = build_train_loader(cfg, dist.rank, dist.world_size, trainer.iteration)
    val_loader = build_val_loader(cfg) if cfg.val and dist.is_main else None

    writer = None
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_yaml_config(cfg, out / "config.yml")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
        _log(f"ec-train {cfg.mode}: {len(dataset)} images, variant {cfg.variant}, device {device}, "
             f"{dist.world_size} process(es), amp {cfg.amp}", dist)
        _log(f"effective batch {cfg.batch * dist.world_size} ({cfg.batch} x {dist.world_size}), "
             f"generator lr {cfg.lr:g}, discriminator lr {cfg.lr * cfg.d2g_lr:g}", dist)

    last_saved = trainer.iteration if state is not None else -1
    last_ckpt: Path | None = None
    metrics: dict[str, float] = {}
    failed = interrupted = False
    bar = tqdm(total=cfg.iters, initial=trainer.iteration, disable=not (dist.is_main and cfg.progress),
               desc=f"ec-train {cfg.mode}", dynamic_ncols=True)
    try:
        if trainer.iteration < cfg.iters:
            for batch in loader:
                logs, vis = trainer.train_step(batch)
                it = trainer.iteration
                if dist.is_main:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
                    if cfg.log_every and it % cfg.log_every == 0:
                        for k, v in logs.items():
                            writer.add_scalar(f"train/{k}", v, it)
                    if cfg.sample_every and it % cfg.sample_every == 0:
                        write_samples(trainer, vis, out, writer)
                    if cfg.save_every and it % cfg.save_every == 0:
                        last_ckpt, last_saved = save_checkpoint(trainer, out, cfg.keep_last), it
                        if cfg.export_official:
                            export_official(trainer, cfg.export_official)
                    if val_loader is not None and cfg.eval_every and it % cfg.eval_every == 0:
                        metrics = evaluate(trainer, val_loader)
                        val_vis = metrics.pop("_vis")
                        for k, v in metrics.items():
                            writer.add_scalar(f"val/{k}", v, it)
                        if val_vis is not None:
                            write_samples(trainer, val_vis, out, writer, tag="val")
                        bar.write(f"[{it}] val " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
                if it >= cfg.iters:
                    break
    except KeyboardInterrupt:
        interrupted = True
        _log(f"\ninterrupted at iteration {trainer.iteration}; saving a checkpoint", dist)
    except TrainingError:
        failed = True
        raise
    finally:
        bar.close()
        if dist.is_main and not failed and trainer.iteration != last_saved:
            last_ckpt = save_checkpoint(trainer, out, cfg.keep_last)
        if dist.is_main and not failed and cfg.export_official:
            for p in export_official(trainer, cfg.export_official):
                _log(f"official-format weights: {p}", dist)
        if writer is not None:
            writer.close()
        if failed and dist.is_main:
            prev = latest_checkpoint(out)
            _log(f"training stopped; the last good checkpoint is {prev or '(none written yet)'}", dist)
    if last_ckpt is None:
        last_ckpt = latest_checkpoint(out)
    if dist.is_main and last_ckpt is not None:
        _log(f"checkpoint: {last_ckpt} (iteration {trainer.iteration})", dist)
    return {"iteration": trainer.iteration, "checkpoint": last_ckpt, "metrics": metrics,
            "interrupted": interrupted, "skipped_images": len(dataset.skipped), "trainer": trainer}
