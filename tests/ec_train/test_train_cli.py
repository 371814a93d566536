"""ec-train end to end on CPU: the four modes from the CLI, exact resume, DDP, crash-safe checkpoints."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ec_train.checkpoints import TRAIN_FORMAT, load_generator
from ec_train.cli import main as ec_train
from ec_train.train import latest_checkpoint, list_checkpoints
from tests.helpers import TRAIN_FAST as FAST, write_sample_photos

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_sample_photos(tmp_path_factory.mktemp("photos"), 6, 80)


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(ec_train, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def scalars(run: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["edge", "inpaint", "edge-inpaint", "joint"])
def test_mode_trains_20_iterations_from_the_cli(mode, photos, tmp_path):
    run, official = tmp_path / "run", tmp_path / "official"
    extra = ["--val", photos, "--eval-every", "10", "--sample-every", "10"] if mode == "joint" else []
    if mode == "edge-inpaint":  # start from official-format edge weights, which must stay frozen
        from ec_train.checkpoints import save_official
        from ec_train.registry import create_model

        edge = create_model("lite", "edge")
        save_official(edge, None, tmp_path / "init")
        extra = ["--init", tmp_path / "init" / "EdgeModel_gen.pth"]
    run_cli(mode, "--data", photos, "--out", run, "--iters", 20, "--save-every", 10, "--keep-last", 1,
            "--log-every", 1, "--export-official", official, *FAST, *extra)

    ckpts = list_checkpoints(run)
    assert [p.name for p in ckpts] == ["ckpt_00000020.pth"]  # --keep-last 1
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    assert state["format"] == TRAIN_FORMAT and state["iteration"] == 20 and state["config"]["mode"] == mode
    trained = {"edge": ["edge"], "inpaint": ["inpaint"], "edge-inpaint": ["inpaint"], "joint": ["edge", "inpaint"]}[mode]
    for kind in trained:
        assert load_generator(ckpts[0], kind) is not None
    exported = {"edge": ["EdgeModel_gen.pth"], "inpaint": ["InpaintingModel_gen.pth"]}.get(
        mode, ["EdgeModel_gen.pth", "InpaintingModel_gen.pth"])
    assert sorted(p.name for p in official.iterdir()) == exported
    for name in exported:
        assert load_generator(official / name) is not None

    if mode == "edge-inpaint":
        frozen = state["models"]["edge_generator"]
        assert all(torch.equal(v, frozen[k]) for k, v in edge.state_dict().items())
    logged = scalars(run)
    main_loss = "train/e_fm" if mode == "edge" else "train/i_l1"
    assert len(logged[main_loss]) == 20
    for tag, values in logged.items():
        assert all(math.isfinite(v) for v in values), tag
    assert (run / "config.yml").is_file()
    if mode == "joint":
        assert {"val/psnr", "val/ssim", "val/l1", "val/precision", "val/recall"} <= set(logged)
        assert 5 < logged["val/psnr"][-1] < 60 and 0 < logged["val/ssim"][-1] <= 1
        assert (run / "samples" / "train_00000020.png").is_file() and (run / "samples" / "val_00000010.png").is_file()


def _params(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    flat = {f"{m}.{k}": v for m, sd in state["models"].items() for k, v in sd.items()}
    flat.update({f"opt.{m}.{i}.{k}": v for m, o in state["optimizers"].items()
                 for i, s in o["state"].items() for k, v in s.items() if torch.is_tensor(v)})
    return flat


@pytest.mark.slow
def test_resume_continues_exactly(photos, tmp_path):
    common = ["joint", "--data", photos, "--seed", 3, "--mask-kind", "irregular", *FAST, "--size", 48]
    run_cli(*common, "--out", tmp_path / "once", "--iters", 15)
    run_cli(*common, "--out", tmp_path / "split", "--iters", 10, "--workers", 2)
    run_cli(*common, "--out", tmp_path / "split", "--iters", 15, "--resume", "--workers", 1)

    once, split = _params(latest_checkpoint(tmp_path / "once")), _params(latest_checkpoint(tmp_path / "split"))
    assert latest_checkpoint(tmp_path / "split").name == "ckpt_00000015.pth"
    assert once.keys() == split.keys()
    worst = max((once[k].double() - split[k].double()).abs().max().item() for k in once)
    assert worst <= 1e-6
    # and training did move the weights
    first = _params(sorted((tmp_path / "split" / "checkpoints").glob("ckpt_*.pth"))[0])
    assert max((first[k].double() - split[k].double()).abs().max().item() for k in first) > 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_keep_identical_weights(photos, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch
        from ec_train.config import TrainConfig
        from ec_train.train import main
        cfg = TrainConfig(mode="joint", data={str(photos)!r}, out={str(tmp_path / 'run')!r}, variant="lite",
                          size=64, batch=1, iters=3, workers=0, vgg_weights="none", device="cpu", progress=False,
                          save_every=0, sample_every=0)
        trainer = main(cfg)["trainer"]
        torch.save({{k: m.state_dict() for k, m in trainer.models.items()}},
                   os.path.join({str(tmp_path)!r}, "rank%s.pth" % os.environ["RANK"]))
    """))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={_free_port()}", str(script)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "effective batch 2 (1 x 2)" in proc.stdout
    r0 = torch.load(tmp_path / "rank0.pth", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pth", weights_only=True)
    init = torch.load(latest_checkpoint(tmp_path / "run"), weights_only=True)  # rank 0's exit checkpoint
    assert init["iteration"] == 3
    for model in ("edge_generator", "inpaint_generator", "edge_discriminator", "inpaint_discriminator"):
        for key, value in r0[model].items():
            assert torch.equal(value, r1[model][key]), f"{model}.{key} differs between ranks"


@pytest.mark.slow
def test_kill_during_checkpoint_write_keeps_latest_loadable(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        from pathlib import Path
        from ec_train.train import save_checkpoint
        class Fake:
            iteration = 0
            def state_dict(self):
                return {{"format": "x", "iteration": self.iteration, "blob": torch.rand(24_000_000)}}
        fake, out = Fake(), Path({str(tmp_path / 'run')!r})
        while True:
            fake.iteration += 1
            save_checkpoint(fake, out, keep_last=2)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    folder = tmp_path / "run" / "checkpoints"
    deadline = time.monotonic() + 120
    try:
        # wait until one checkpoint is complete and the next one is half written
        while time.monotonic() < deadline:
            tmp = list(folder.glob(".ckpt_*.tmp")) if folder.is_dir() else []
            try:
                if list_checkpoints(tmp_path / "run") and tmp and tmp[0].stat().st_size > 10_000_000:
                    break
            except FileNotFoundError:  # renamed into place between the glob and the stat
                pass
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert list(folder.glob(".ckpt_*.tmp")), "the writer was not killed mid-write"
    latest = latest_checkpoint(tmp_path / "run")
    state = torch.load(latest, weights_only=True)
    assert state["blob"].numel() == 24_000_000 and f"{state['iteration']:08d}" in latest.name


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_saves_a_checkpoint(photos, tmp_path, stop):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "ec_train.cli", "edge", "--data", str(photos), "--out", str(run), "--iters", "100000",
           "--save-every", "100000", "--sample-every", "1", *FAST]
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not (run / "samples" / "train_00000002.png").exists():
            time.sleep(0.05)
        proc.send_signal(stop)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted at iteration" in output
    state = torch.load(latest_checkpoint(run), weights_only=True)  # written only by the exit handler
    assert state["iteration"] >= 2


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_with_loader_workers(photos, tmp_path):
    """``kill -- -PGID`` (and schedulers that signal the job's group) reach the DataLoader workers too;
    the run must still stop cleanly with its checkpoint, not with a dead-worker traceback."""
    run = tmp_path / "run"
    fast = list(FAST)
    fast[fast.index("--workers") + 1] = "1"
    cmd = [sys.executable, "-m", "ec_train.cli", "edge", "--data", str(photos), "--out", str(run), "--iters", "100000",
           "--save-every", "100000", "--sample-every", "1", *fast]
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not (run / "samples" / "train_00000002.png").exists():
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted at iteration" in output and "Traceback" not in output, output
    assert torch.load(latest_checkpoint(run), weights_only=True)["iteration"] >= 2
