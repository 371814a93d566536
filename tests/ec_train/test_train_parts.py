"""ec-train building blocks: losses, VGG19 loading, config, data errors, update order, NaN stop, overfitting."""

from __future__ import annotations

import copy
import itertools
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ec_train.cli import main as ec_train
from ec_train.config import TrainConfig, config_from_mapping, load_yaml_config
from ec_train.data import InpaintDataset, MaskSource, ResumableSampler, build_train_loader, build_val_loader, list_images
from ec_train.errors import ConfigError, DataError, TrainingError
from ec_train.losses import AdversarialLoss, gram_matrix, style_loss
from ec_train.samples import SAMPLE_PHOTOS, sample_photo
from ec_train.trainer import ED, EG, IG, Trainer
from ec_train.vgg import VGG19_FILE, VGG19Features, load_vgg19

CPU = torch.device("cpu")


def write_photos(folder: Path, count: int = 4, size: int = 72) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_PHOTOS[:count]:
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(sample_photo(name, size), cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"))


def small_cfg(photos: Path, mode: str = "inpaint", **kw) -> TrainConfig:
    base = dict(mode=mode, data=str(photos), variant="lite", size=64, batch=2, workers=0, vgg_weights="none")
    base.update(kw)
    return TrainConfig(**base)


def first_batch(cfg: TrainConfig) -> dict:
    loader, _ = build_train_loader(cfg)
    return next(iter(loader))


# ------------------------------------------------------------------ losses
def test_gram_is_normalised_by_c_h_w():
    f = torch.ones(1, 2, 3, 4)
    assert torch.allclose(gram_matrix(f), torch.full((1, 2, 2), 1 / 2))
    a = {k: torch.rand(2, 4, 8, 8) for k in ("relu2_2", "relu3_4", "relu4_4", "relu5_2")}
    assert style_loss(a, a).item() == 0.0


def test_adversarial_losses():
    real, fake = torch.full((2, 1, 4, 4), 0.9), torch.full((2, 1, 4, 4), 0.1)
    ns = AdversarialLoss("nsgan")
    assert ns(real, True, True).item() == pytest.approx(-np.log(0.9), rel=1e-5)
    assert AdversarialLoss("lsgan")(fake, True).item() == pytest.approx(0.81, rel=1e-5)
    hinge = AdversarialLoss("hinge")
    assert not hinge.discriminator_uses_sigmoid
    assert hinge(torch.full((1, 1, 2, 2), 0.5), True, True).item() == pytest.approx(0.5)
    assert hinge(torch.full((1, 1, 2, 2), 0.5), False, True).item() == pytest.approx(1.5)
    assert hinge(torch.full((1, 1, 2, 2), 0.5), True, False).item() == pytest.approx(-0.5)
    with pytest.raises(ConfigError, match="unknown GAN loss"):
        AdversarialLoss("wgan")


# ------------------------------------------------------------------ VGG19
def test_missing_vgg_weights_stop_before_training(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    result = CliRunner().invoke(ec_train, ["inpaint", "--data", str(photos), "--out", str(tmp_path / "run"),
                                           "--variant", "lite", "--size", "64", "--iters", "5", "--workers", "0"])
    assert result.exit_code != 0
    assert VGG19_FILE in result.output and str(tmp_path / "torch-home") in result.output
    assert "download.pytorch.org" in result.output and "--vgg-weights none" in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_torchvision_style_vgg_file_loads_and_feeds_the_losses(photos, tmp_path):
    sd = {k: torch.randn_like(v) * 0.05 for k, v in VGG19Features().state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision files also hold the classifier
    torch.save(sd, tmp_path / VGG19_FILE)
    vgg = load_vgg19(tmp_path / VGG19_FILE)
    assert torch.equal(vgg.features[0].weight, sd["features.0.weight"])
    feats = vgg(torch.rand(1, 3, 32, 32))
    assert feats["relu5_2"].shape == (1, 512, 2, 2) and feats["relu1_1"].shape == (1, 64, 32, 32)

    cfg = small_cfg(photos, batch=1, size=48)
    trainer = Trainer(cfg, CPU, vgg=vgg)
    logs, _ = trainer.train_step(first_batch(cfg))
    assert logs["i_content"] > 0 and logs["i_style"] > 0 and np.isfinite(list(logs.values())).all()
    with pytest.raises(ConfigError, match="not torchvision's VGG19"):
        torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
        load_vgg19(tmp_path / "bad.pth")


# ------------------------------------------------------------------ config
@pytest.mark.slow
def test_official_yaml_keys_and_cli_precedence(photos, tmp_path):
    yml = tmp_path / "config.yml"
    yml.write_text("MODEL: 3\nLR: 0.0002\nD2G_LR: 0.2\nBATCH_SIZE: 4\nINPUT_SIZE: 128\nSIGMA: 0\nGAN_LOSS: lsgan\n"
                   "MAX_ITERS: 9\nFM_LOSS_WEIGHT: 5\nSTYLE_LOSS_WEIGHT: 100\nSAVE_INTERVAL: 3\nGPU: [0]\n")
    cfg = load_yaml_config(yml)
    assert (cfg.mode, cfg.lr, cfg.d2g_lr, cfg.batch, cfg.size, cfg.sigma, cfg.gan_loss, cfg.iters, cfg.fm_weight,
            cfg.style_weight, cfg.save_every) == ("edge-inpaint", 2e-4, 0.2, 4, 128, 0, "lsgan", 9, 5, 100, 3)
    with pytest.warns(UserWarning, match="unknown key"):
        config_from_mapping({"NOT_A_KEY": 1})
    with pytest.raises(ConfigError, match="multiple of 4"):
        TrainConfig(data="x", size=30).validate()

    # flags override the file; the resolved config is written beside the outputs
    run = tmp_path / "run"
    yml.write_text("LR: 0.0002\nBATCH_SIZE: 1\nINPUT_SIZE: 48\nSAVE_INTERVAL: 100\n")
    result = CliRunner().invoke(ec_train, ["edge", "--config", str(yml), "--data", str(photos), "--out", str(run),
                                           "--iters", "1", "--lr", "0.0003", "--variant", "lite", "--workers", "0",
                                           "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = load_yaml_config(run / "config.yml")
    assert (written.lr, written.batch, written.size, written.save_every) == (3e-4, 1, 48, 100)
    assert "generator lr 0.0003, discriminator lr 3e-05" in result.output


# ------------------------------------------------------------------ data
def test_bad_data_gives_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no training images in"):
        list_images(tmp_path / "empty", "training images")
    with pytest.raises(DataError, match="not found"):
        list_images(tmp_path / "missing")

    good = write_photos(tmp_path / "mixed", count=3)
    (good / "garbage.png").write_bytes(b"not an image at all")
    (good / "sub").mkdir()
    (good / "sub" / "empty.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable or non-image file\(s\) of 5"):
        assert len(list_images(good)) == 3

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.webp").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="none of the 1 files"):
        list_images(tmp_path / "bad")


def test_undecodable_image_is_skipped_with_a_count(tmp_path):
    folder = write_photos(tmp_path / "imgs", count=2)
    (folder / "aaa_truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # right header, broken body
    paths = list_images(folder)
    assert len(paths) == 3 and paths[0].name == "aaa_truncated.png"
    ds = InpaintDataset(paths, MaskSource(64, kind="block"), 64)
    with pytest.warns(UserWarning, match=r"cannot decode .*aaa_truncated.png.*\(1 undecodable so far\)"):
        sample = ds[0]
    assert sample["image"].shape == (3, 64, 64) and ds.skipped == {0}


def test_mask_files_and_a_too_small_mask_set(photos, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(2):  # black marks the hole, any size
        m = np.full((50, 100), 255, np.uint8)
        m[10:30, 20 + 30 * i:60 + 30 * i] = 0
        cv2.imwrite(str(masks / f"m{i}.png"), m)
    cfg = small_cfg(photos, masks=str(masks), mask_invert=True, val=str(photos))
    batch = first_batch(cfg)
    assert batch["mask"].shape == (2, 1, 64, 64)
    assert set(batch["mask"].unique().tolist()) == {0.0, 1.0} and 0.05 < batch["mask"].mean() < 0.5
    with pytest.raises(DataError, match=r"2 mask\(s\), fewer than the 4 requested"):
        build_val_loader(cfg)  # one mask per validation image


def test_data_is_reproducible_across_workers_and_resumable(photos):
    cfg = small_cfg(photos, mask_kind="mixed")
    take = lambda c, n, start=0: list(itertools.islice(iter(build_train_loader(c, start_iteration=start)[0]), n))
    a, b = take(cfg, 4), take(small_cfg(photos, workers=2), 4)
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])
    later = take(cfg, 1, start=3)[0]
    assert torch.equal(later["image"], a[3]["image"]) and torch.equal(later["mask"], a[3]["mask"])

    stream = lambda **kw: list(itertools.islice(iter(ResumableSampler(5, seed=1, **kw)), 12))
    assert stream()[7:12] == list(itertools.islice(iter(ResumableSampler(5, seed=1, start=7)), 5))
    r0, r1 = stream(rank=0, world_size=2), stream(rank=1, world_size=2)
    assert {i for e, i in r0[:3]} | {i for e, i in r1[:3]} == set(range(5))  # one epoch split over 2 ranks


# ------------------------------------------------------------------ update order, NaN, overfit
@pytest.mark.slow
def test_no_generator_gradient_reaches_the_discriminator(photos):
    cfg = small_cfg(photos, mode="edge")
    trainer = Trainer(cfg, CPU)
    batch = first_batch(cfg)
    g0, d0 = copy.deepcopy(trainer.models[EG]), copy.deepcopy(trainer.models[ED])
    captured = {}
    trainer.optimizers[ED].step = lambda *a, **k: captured.update(
        {n: p.grad.clone() for n, p in trainer.models[ED].named_parameters()})
    trainer.train_step(batch)

    # the discriminator's gradient must be exactly that of its own loss on detached fakes
    images, gray, edges, masks = trainer.prepare(batch)
    from ec_train.networks import edge_generator_input

    with torch.no_grad():
        fake = g0(edge_generator_input(gray, edges, masks))
    n = gray.shape[0]
    out, _ = d0(torch.cat([torch.cat([gray, edges], 1), torch.cat([gray, fake], 1)]))
    loss = (trainer.adversarial(out[:n], True, True) + trainer.adversarial(out[n:], False, True)) / 2
    loss.backward()
    for name, p in d0.named_parameters():
        assert torch.allclose(captured[name], p.grad, atol=1e-6, rtol=1e-4), name


def test_nan_loss_stops_without_updating(photos):
    cfg = small_cfg(photos)
    trainer = Trainer(cfg, CPU)
    with torch.no_grad():
        trainer.models[IG].decoder[7].bias.fill_(float("nan"))
    disc = trainer.models["inpaint_discriminator"]
    before = {k: v.detach().clone() for k, v in disc.named_parameters()}
    with pytest.raises(TrainingError, match="non-finite at iteration 1"):
        trainer.train_step(first_batch(cfg))
    assert trainer.iteration == 0
    for k, v in disc.named_parameters():  # no optimizer step was taken
        assert torch.equal(v, before[k]), k


@pytest.mark.slow
def test_overfitting_one_batch_lowers_inpaint_l1(photos):
    cfg = small_cfg(photos, batch=1, size=32, lr=4e-4)
    trainer = Trainer(cfg, CPU)
    batch = first_batch(cfg)

    def l1() -> float:
        images, gray, edges, masks = trainer.prepare(batch)
        with torch.no_grad():
            _, out, _ = trainer.generate(images, gray, edges, masks, train=False)
        return (out - images).abs().mean().item()

    start = l1()
    for _ in range(100):
        trainer.train_step(batch)
    end = l1()
    assert end <= 0.7 * start, (start, end)
