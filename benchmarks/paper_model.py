"""A paper-size EdgeConnect pair with random weights, as official checkpoint files plus its export.

Users with the official checkpoints run generators of this size (8 residual blocks, 64 base
channels, 10.8 M parameters each), so ``ec-bench`` measures it beside the lite demo model. The
weights are random (seeded), so only its speed means something, never its PSNR::

    python -m benchmarks.paper_model /tmp/paper            # checkpoints/ + export/ (fp32, int8)
    ec-bench ec_runtime/models/demo-export /tmp/paper/export --precisions fp32,int8
"""

from __future__ import annotations

from pathlib import Path

import click

PAPER_VARIANT = "edgeconnect"
PARAMS_PER_GENERATOR = 10_800_000  # the paper's figure, rounded


def write_paper_checkpoints(out_dir: str | Path, seed: int = 0) -> list[Path]:
    """``EdgeModel_gen.pth`` + ``InpaintingModel_gen.pth`` (official format) of a random paper-size pair."""
    import torch

    from ec_train.checkpoints import save_official
    from ec_train.registry import create_model

    torch.manual_seed(seed)
    edge, inpaint = create_model(PAPER_VARIANT, "edge"), create_model(PAPER_VARIANT, "inpaint")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_official(edge, inpaint, out_dir)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--precisions", default="fp32,int8", show_default=True, help="precisions to export")
@click.option("--seed", default=0, show_default=True, help="weight initialisation seed")
def main(out_dir: Path, precisions: str, seed: int) -> None:
    """Write OUT_DIR/checkpoints (random paper-size pair) and OUT_DIR/export (its ec-export)."""
    from ec_export.exporter import export_checkpoints

    if (out_dir / "export").exists():
        raise click.ClickException(f"{out_dir / 'export'} exists; choose another OUT_DIR")
    files = write_paper_checkpoints(out_dir / "checkpoints", seed)
    click.echo(f"wrote {', '.join(str(f) for f in files)}")
    export_checkpoints([out_dir / "checkpoints"], out_dir / "export",
                       precisions=tuple(p for p in precisions.split(",") if p), progress=True)
    click.echo(f"exported to {out_dir / 'export'}")


if __name__ == "__main__":
    main()
