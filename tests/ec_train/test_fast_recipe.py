"""The CPU-friendly training recipe: discriminators scaled with the variant, reconstruction-only
inpaint training (``--adv-weight 0``) and the clear resume/--init path between them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ec_train.checkpoints import atomic_save
from ec_train.cli import main as ec_train
from ec_train.config import TrainConfig
from ec_train.data import build_train_loader
from ec_train.errors import CheckpointError
from ec_train.networks import Discriminator
from ec_train.registry import create_model
from ec_train.trainer import ID, IG, Trainer
from tests.helpers import write_sample_photos

CPU = torch.device("cpu")


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_sample_photos(tmp_path_factory.mktemp("photos"), 3, 40)


def cfg_for(photos: Path, **kw) -> TrainConfig:
    base = dict(mode="inpaint", data=str(photos), variant="lite", size=32, batch=2, workers=0, vgg_weights="none",
                mask_kind="irregular")
    base.update(kw)
    return TrainConfig(**base)


def test_discriminators_scale_with_the_variant():
    paper = create_model("edgeconnect", "inpaint_discriminator")
    lite = create_model("lite", "inpaint_discriminator")
    assert paper.conv1[0].weight_orig.shape[0] == 64 and n_params(paper) == 2_763_776
    assert lite.conv1[0].weight_orig.shape[0] == 32
    assert n_params(lite) < n_params(paper) / 3.5  # ~0.69M vs 2.76M
    assert create_model("lite", "edge_discriminator").conv1[0].weight_orig.shape[0] == 32


def test_adv_weight_zero_trains_the_inpaint_generator_alone(photos):
    cfg = cfg_for(photos, inpaint_adv_weight=0.0)
    trainer = Trainer(cfg, CPU)
    assert IG in trainer.trained and ID not in trainer.optimizers
    disc_before = {k: v.clone() for k, v in trainer.models[ID].state_dict().items()}
    gen_before = {k: v.clone() for k, v in trainer.models[IG].state_dict().items()}
    logs, _ = trainer.train_step(next(iter(build_train_loader(cfg)[0])))
    assert set(logs) == {"i_l1"}
    assert all(torch.equal(v, disc_before[k]) for k, v in trainer.models[ID].state_dict().items())
    assert any(not torch.equal(v, gen_before[k]) for k, v in trainer.models[IG].state_dict().items())


def test_adv_weight_flag_reaches_the_config(photos, tmp_path):
    result = CliRunner().invoke(ec_train, ["inpaint", "--data", str(photos), "--out", str(tmp_path / "run"),
                                           "--variant", "lite", "--size", "32", "--batch", "1", "--workers", "0",
                                           "--vgg-weights", "none", "--no-progress", "--device", "cpu",
                                           "--iters", "2", "--adv-weight", "0", "--l1-weight", "2"])
    assert result.exit_code == 0, result.output
    import yaml

    saved = yaml.safe_load((tmp_path / "run" / "config.yml").read_text())
    assert saved["inpaint_adv_weight"] == 0.0 and saved["l1_weight"] == 2.0
    state = torch.load(tmp_path / "run" / "checkpoints" / "ckpt_00000002.pth", weights_only=True)
    assert ID not in state["optimizers"] and IG in state["optimizers"]


def _old_width_checkpoint(photos: Path, path: Path) -> Path:
    """A lite checkpoint written before discriminators were scaled (64-channel discriminators)."""
    trainer = Trainer(cfg_for(photos), CPU)
    state = trainer.state_dict()
    for key, cin in (("edge_discriminator", 2), ("inpaint_discriminator", 3)):
        state["models"][key] = Discriminator(cin, base_channels=64).state_dict()
    state["optimizers"][ID] = torch.optim.Adam(Discriminator(3, base_channels=64).parameters()).state_dict()
    return atomic_save(state, path)


def test_old_discriminator_width_cannot_resume_but_init_works(photos, tmp_path):
    ckpt = _old_width_checkpoint(photos, tmp_path / "old.pth")
    trainer = Trainer(cfg_for(photos), CPU)
    with pytest.raises(CheckpointError, match=r"64-channel .*uses 32 channels.*--init"):
        trainer.load_state_dict(torch.load(ckpt, weights_only=True), source="old.pth")
    fresh = Trainer(cfg_for(photos), CPU)
    loaded = fresh.load_init([str(ckpt)])
    assert any(line.startswith(IG) for line in loaded)
    assert any(line.startswith(f"{ID} not loaded") and "starts afresh" in line for line in loaded)


def test_resume_of_a_reconstruction_only_run_into_an_adversarial_one_says_use_init(photos):
    state = Trainer(cfg_for(photos, inpaint_adv_weight=0.0), CPU).state_dict()
    with pytest.raises(CheckpointError, match=r"--adv-weight 0.*--init"):
        Trainer(cfg_for(photos), CPU).load_state_dict(state, source="l1.pth")


def _compact_script():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "compact_checkpoint.py"
    spec = importlib.util.spec_from_file_location("compact_checkpoint", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compact_checkpoint_keeps_generators_for_init(photos, tmp_path, capsys):
    script = _compact_script()
    trainer = Trainer(cfg_for(photos), CPU)
    trainer.train_step(next(iter(build_train_loader(cfg_for(photos))[0])))
    full = atomic_save(trainer.state_dict(), tmp_path / "full.pth")
    assert script.main([str(full), str(tmp_path / "small.pth")]) == 0
    small = torch.load(tmp_path / "small.pth", weights_only=True)
    assert set(small["models"]) == {"edge_generator", "inpaint_generator"} and "optimizers" not in small
    assert (tmp_path / "small.pth").stat().st_size < full.stat().st_size / 4
    fresh = Trainer(cfg_for(photos), CPU)
    assert len(fresh.load_init([str(tmp_path / "small.pth")])) == 2
    for k, v in fresh.models[IG].state_dict().items():  # fp16 storage: equal to fp16 precision
        assert torch.allclose(v, trainer.models[IG].state_dict()[k], rtol=1e-3, atol=1e-4), k
    assert script.main([str(tmp_path / "missing.pth"), str(tmp_path / "x.pth")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
