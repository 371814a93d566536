"""``ec-train MODE``: train EdgeConnect (edge, inpaint, edge-inpaint or joint) on your images.

Heavy imports live inside the command so ``ec-train --help`` is instant.
"""

from __future__ import annotations

import click

from ec_train.config import VARIANT_NAMES

MODES = ("edge", "inpaint", "edge-inpaint", "joint")

# CLI option -> TrainConfig field (only options the user actually gave override the config).
_FIELDS = ("data", "val", "masks", "mask_kind", "mask_invert", "out", "size", "batch", "iters", "lr", "gan_loss",
           "sigma", "device", "amp", "channels_last", "vgg_weights", "seed", "variant", "save_every", "keep_last",
           "eval_every", "sample_every", "log_every", "export_official", "workers", "progress",
           "l1_weight", "inpaint_adv_weight", "fm_weight")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("mode", type=click.Choice(MODES))
@click.option("--data", help="Training images: a folder (recursive; jpg/png/webp) or an flist file.")
@click.option("--val", help="Validation images (folder or flist) for --eval-every.")
@click.option("--masks", help="Mask images (folder or flist, any size). Default: procedural masks (--mask-kind).")
@click.option("--mask-kind", type=click.Choice(["irregular", "block", "half", "mixed"]),
              help="Procedural masks when --masks is not given.  [default: mixed]")
@click.option("--mask-invert/--no-mask-invert", default=None, help="Mask files mark the hole in black.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (checkpoints, samples, tensorboard, config.yml).")
@click.option("--size", type=int, help="Training crop size, a multiple of 4.  [default: 256]")
@click.option("--batch", type=int, help="Batch size per process.  [default: 8]")
@click.option("--iters", type=int, help="Total iterations (a resumed run continues up to this).")
@click.option("--lr", type=float, help="Generator learning rate; discriminators use D2G_LR x lr.  [default: 1e-4]")
@click.option("--gan-loss", type=click.Choice(["nsgan", "lsgan", "hinge"]), help="[default: nsgan]")
@click.option("--sigma", type=float, help="Canny sigma (0 = random 1-4 per image, -1 = no edges).  [default: 2]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="[default: auto]")
@click.option("--amp", type=click.Choice(["off", "bf16", "fp16"]), is_flag=False, flag_value="bf16",
              help="Mixed precision (bare --amp = bf16; fp16 uses a GradScaler, CUDA only).")
@click.option("--channels-last/--no-channels-last", default=None, help="channels_last memory format.")
@click.option("--resume", is_flag=False, flag_value="latest", default=None,
              help="Continue exactly from a checkpoint file, or (bare --resume) the newest one in --out.")
@click.option("--init", "init", multiple=True,
              help="Start from weights: official EdgeModel_gen.pth / InpaintingModel_gen.pth (or their folder), "
                   "or an ec-train checkpoint. Repeatable.")
@click.option("--l1-weight", "l1_weight", type=float, help="Inpaint L1 loss weight (L1_LOSS_WEIGHT).  [default: 1]")
@click.option("--adv-weight", "inpaint_adv_weight", type=float,
              help="Inpaint adversarial loss weight (INPAINT_ADV_LOSS_WEIGHT); 0 trains the inpaint stage on "
                   "reconstruction alone and neither runs nor updates its discriminator.  [default: 0.1]")
@click.option("--fm-weight", "fm_weight", type=float,
              help="Edge feature-matching loss weight (FM_LOSS_WEIGHT).  [default: 10]")
@click.option("--vgg-weights", help="torchvision's vgg19-dcbc0b5d.pth (default: $TORCH_HOME/hub/checkpoints/), "
                                     "or 'none' to train without perceptual and style losses.")
@click.option("--seed", type=int, help="[default: 10]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
              help="YAML config (official config.yml key names accepted); flags override it.")
@click.option("--variant", type=click.Choice(VARIANT_NAMES),
              help="edgeconnect: the paper's networks; lite: 4 blocks, 32 channels; lite-fill: lite whose stage 2 "
                   "corrects a smooth coarse fill of the hole (the demo model).  [default: edgeconnect]")
@click.option("--save-every", type=int, help="Checkpoint interval in iterations.  [default: 1000]")
@click.option("--keep-last", type=int, help="Checkpoints kept.  [default: 3]")
@click.option("--eval-every", type=int, help="Validation interval (needs --val; 0 = never).")
@click.option("--sample-every", type=int, help="Sample-grid interval.  [default: 1000]")
@click.option("--log-every", type=int, help="TensorBoard scalar interval.  [default: 10]")
@click.option("--export-official", type=click.Path(file_okay=False),
              help="Also write EdgeModel_gen.pth / InpaintingModel_gen.pth (official format) here.")
@click.option("--workers", type=int, help="DataLoader worker processes.  [default: 2]")
@click.option("--progress/--no-progress", default=None, help="Progress bar.")
def main(mode, config_path, resume, init, **options):
    """Train EdgeConnect in MODE: edge, inpaint, edge-inpaint (frozen edge model) or joint.

    \b
    Example:
      ec-train edge    --data photos/ --out runs/edge --iters 200000
      ec-train inpaint --data photos/ --masks irregular/ --mask-invert --out runs/inp
      ec-train joint   --init runs/edge/checkpoints/ckpt_00200000.pth --init runs/inp/checkpoints/... --data photos/
    """
    import os

    from ec_train.config import TrainConfig, load_yaml_config
    from ec_train.errors import EcError
    from ec_train.rundir import check_run_folder

    try:
        cfg = load_yaml_config(config_path) if config_path else TrainConfig()
        cfg.mode = mode
        for name in _FIELDS:
            if options.get(name) is not None:
                setattr(cfg, name, options[name])
        if init:
            cfg.init = list(init)
        cfg.validate()  # every value, before torch loads
        if os.environ.get("RANK", "0") == "0":
            check_run_folder(cfg.out, resume, cfg.export_official)
        from ec_train.train import main as train_main

        summary = train_main(cfg, resume=resume)
    except EcError as exc:
        raise click.ClickException(str(exc)) from None
    if summary.get("interrupted"):
        raise SystemExit(130)


if __name__ == "__main__":
    main()
