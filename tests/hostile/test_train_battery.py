"""Hostile cases for ``ec-train``: every numeric option and ``--config`` YAML key with a wrong type
or range, used and unwritable run folders, and the modes of what a run writes.

Each case asserts the exit code, that no traceback was printed, and the files afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.battery import fails, mode, ok, readonly_dir, run, tree
from tests.helpers import TRAIN_FAST as FAST, write_sample_photos



@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_sample_photos(tmp_path_factory.mktemp("train_photos"), 2, 72)


# ---------------------------------------------------------------- command-line options
BAD_OPTIONS = [
    ("--size", "0"), ("--size", "30"), ("--size", "8"), ("--size", "8192"), ("--size", "abc"), ("--size", "-64"),
    ("--batch", "0"), ("--batch", "-1"), ("--batch", "5000"), ("--batch", "x"),
    ("--iters", "-1"), ("--iters", "1.5"),
    ("--lr", "0"), ("--lr", "-1e-4"), ("--lr", "nan"), ("--lr", "inf"), ("--lr", "2"), ("--lr", "abc"),
    ("--sigma", "-2"), ("--sigma", "nan"), ("--sigma", "40"), ("--sigma", "x"),
    ("--workers", "-1"), ("--workers", "1000"), ("--seed", "-1"), ("--seed", str(2**40)),
    ("--save-every", "-1"), ("--keep-last", "0"), ("--keep-last", "-3"), ("--eval-every", "-5"),
    ("--sample-every", "-1"), ("--log-every", "-1"),
    ("--adv-weight", "-1"), ("--l1-weight", "nan"), ("--fm-weight", "inf"),
]


@pytest.mark.parametrize("option,value", BAD_OPTIONS, ids=lambda v: str(v))
def test_bad_option_is_a_one_line_error_before_any_work(option, value, tmp_path):
    res = fails(run("ec-train", "edge", "--data", "photos", "--out", tmp_path / "run", option, value,
                    cwd=tmp_path, timeout=60), option)
    assert res.rc in (1, 2)
    assert tree(tmp_path) == {}


# ---------------------------------------------------------------- --config YAML keys
BAD_KEYS = [
    "LR: abc", "LR: .nan", "BATCH_SIZE: 0", "INPUT_SIZE: 255", "SIGMA: x", "MAX_ITERS: -5", "workers: -1",
    "SEED: -1", "mask_threshold: 2", "hole_ratio: [0.5, 0.1]", "hole_ratio: x", "GAN_LOSS: wgan", "MODEL: 7",
    "progress: maybe", "keep_last: 0", "SAVE_INTERVAL: often", "D2G_LR: 0", "BETA1: 1.0", "init: 5",
    "TRAIN_FLIST: 5", "amp: fp8", "device: tpu", "size: true", "L1_LOSS_WEIGHT: -1", "EDGE_THRESHOLD: 1.5",
    "variant: huge", "batch: [1, 2]", "lr: {a: 1}",
]


@pytest.mark.parametrize("line", BAD_KEYS)
def test_bad_config_key_is_a_one_line_error_naming_the_key(line, tmp_path):
    cfg = tmp_path / "config.yml"
    cfg.write_text(line + "\n")
    before = tree(tmp_path)
    res = fails(run("ec-train", "edge", "--data", "photos", "--out", tmp_path / "run", "--config", cfg,
                    cwd=tmp_path, timeout=60), line.split(":")[0])
    assert res.rc == 1 and "config.yml" in res.out
    assert tree(tmp_path) == before


@pytest.mark.parametrize("content", ("[1, 2]", "a: [1, 2", b"\xff\xfe\x00garbage\x00", "just a string"))
def test_unreadable_config_file_is_a_one_line_error(content, tmp_path):
    cfg = tmp_path / "config.yml"
    cfg.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = tree(tmp_path)
    fails(run("ec-train", "edge", "--data", "photos", "--out", tmp_path / "run", "--config", cfg, cwd=tmp_path,
              timeout=60), "config.yml")
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- run folders
@pytest.mark.parametrize("earlier", ("checkpoint", "config_only"))
def test_used_run_folder_without_resume_is_refused(earlier, tmp_path):
    """`--out runA` where runA holds an earlier run: a fresh run would mix with it (and --keep-last
    would prune the new checkpoints in favour of the old run's higher iterations)."""
    run_dir = tmp_path / "runA"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yml").write_text("mode: edge\n")
    if earlier == "checkpoint":
        (run_dir / "checkpoints" / "ckpt_00000200.pth").write_bytes(b"an earlier run's checkpoint")
    before = tree(tmp_path)
    fails(run("ec-train", "edge", "--data", "photos", "--out", run_dir, "--keep-last", "1", cwd=tmp_path, timeout=60),
          "--resume")
    assert tree(tmp_path) == before


def test_resuming_an_older_checkpoint_into_a_folder_with_newer_ones_is_refused(photos, tmp_path):
    import torch

    run_dir = tmp_path / "runA"
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"format": "ec-deploy/train-checkpoint/v1", "iteration": 100}, run_dir / "checkpoints" / "ckpt_00000100.pth")
    (run_dir / "checkpoints" / "ckpt_00000200.pth").write_bytes(b"newer")
    before = tree(tmp_path)
    fails(run("ec-train", "edge", "--data", photos, "--out", run_dir, "--resume",
              run_dir / "checkpoints" / "ckpt_00000100.pth", "--keep-last", "1", *FAST, cwd=tmp_path), "newer")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind", ("is_a_file", "under_a_file", "readonly", "official_under_a_file"))
def test_unwritable_outputs_are_refused_before_any_work(kind, tmp_path):
    (tmp_path / "f").write_text("a file")
    out, extra = tmp_path / "run", []
    if kind == "is_a_file":
        out = tmp_path / "f"
    elif kind == "under_a_file":
        out = tmp_path / "f" / "run"
    elif kind == "readonly":
        out = readonly_dir(tmp_path) / "ec-hostile-run"
    else:
        extra = ["--export-official", tmp_path / "f" / "official"]
    before = tree(tmp_path)
    res = fails(run("ec-train", "edge", "--data", "photos", "--out", out, *extra, cwd=tmp_path, timeout=60))
    assert ("--export-official" if extra else "--out") in res.out
    assert tree(tmp_path) == before


@pytest.mark.parametrize("problem", ("missing_data", "empty_data", "missing_resume", "missing_init"))
def test_missing_inputs_are_clean_errors(problem, photos, tmp_path):
    args = ["--data", photos]
    if problem == "missing_data":
        args = ["--data", tmp_path / "nowhere"]
    elif problem == "empty_data":
        (tmp_path / "empty").mkdir()
        args = ["--data", tmp_path / "empty"]
    elif problem == "missing_resume":
        args += ["--resume", tmp_path / "gone.pth"]
    else:
        args += ["--init", tmp_path / "gone.pth"]
    before = tree(tmp_path)
    fails(run("ec-train", "edge", *args, "--out", tmp_path / "run", "--iters", "2", *FAST, cwd=tmp_path))
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert {k for k in tree(tmp_path) if not k.startswith("run")} == {k for k in before if not k.startswith("run")}


def test_a_run_writes_usual_modes_then_refuses_a_fresh_run_and_resumes_with_keep_last(photos, tmp_path):
    """Checkpoints and config get 0644 under umask 022 (not 0600); the same --out without --resume is
    refused; with --resume the run continues and --keep-last 1 keeps the newest checkpoint."""
    run_dir = tmp_path / "runA"
    ok(run("ec-train", "edge", "--data", photos, "--out", run_dir, "--iters", "2", "--save-every", "1",
           "--keep-last", "1", *FAST, cwd=tmp_path, umask=0o022), "ckpt_00000002.pth")
    ckpts = sorted((run_dir / "checkpoints").iterdir())
    assert [p.name for p in ckpts] == ["ckpt_00000002.pth"]
    assert mode(ckpts[0]) == 0o644 and mode(run_dir / "config.yml") == 0o644
    before = tree(run_dir)
    fails(run("ec-train", "edge", "--data", photos, "--out", run_dir, "--iters", "4", "--keep-last", "1", *FAST,
              cwd=tmp_path), "--resume")
    assert tree(run_dir) == before
    ok(run("ec-train", "edge", "--data", photos, "--out", run_dir, "--iters", "3", "--save-every", "1",
           "--keep-last", "1", "--resume", *FAST, cwd=tmp_path), "resumed")
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["ckpt_00000003.pth"]
