"""Hostile cases for ``ec-export``: output folders holding the user's files, interrupted and killed
exports, poisoned weights, damaged checkpoints, and every numeric option out of range.

Each case asserts the exit code, that no traceback was printed, and the files afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.battery import fails, mode, ok, readonly_dir, run, start, stop, tree, wait_for
from tests.hostile.conftest import write_tiny_checkpoint

FAST = ["--canny-iterations", "16", "-q"]


def _strict(path: Path) -> dict:
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _user_folder(tmp_path: Path, tiny_checkpoint: Path, earlier_export: Path | None = None) -> Path:
    """``exp/`` holding the checkpoint, the user's notes and (optionally) an earlier export's files."""
    exp = tmp_path / "exp"
    if earlier_export is not None:
        shutil.copytree(earlier_export, exp)
    else:
        exp.mkdir()
    shutil.copy(tiny_checkpoint, exp / "model.pth")
    (exp / "notes.txt").write_text("my notes: do not delete\n")
    (exp / "sub").mkdir()
    (exp / "sub" / "keep.onnx").write_bytes(b"user data")
    return exp


# ---------------------------------------------------------------- the output folder
def test_reexport_into_the_folder_holding_the_checkpoint_keeps_every_user_file(tiny_checkpoint, tiny_export_dir,
                                                                                tmp_path):
    """`ec-export exp/model.pth -o exp` where exp/ is an earlier export that also holds the checkpoint."""
    exp = _user_folder(tmp_path, tiny_checkpoint, tiny_export_dir)
    user = {k: v for k, v in tree(exp).items() if k in ("model.pth", "notes.txt", "sub/", "sub/keep.onnx")}
    ok(run("ec-export", exp / "model.pth", "-o", exp, *FAST, cwd=tmp_path), "wrote 3 ONNX files")
    after = tree(exp)
    assert {k: after.get(k) for k in user} == user  # nothing of the user's deleted or changed
    manifest = _strict(exp / "export.json")
    ckpt = Path(manifest["source"]["checkpoints"][0]["path"])
    assert ckpt.is_absolute() and ckpt == exp / "model.pth" and ckpt.is_file()
    assert _hidden(exp) == [] and _hidden(tmp_path) == []  # no staging folder left behind


def test_export_into_a_user_folder_without_an_earlier_export(tiny_checkpoint, tmp_path):
    exp = _user_folder(tmp_path, tiny_checkpoint)
    user = tree(exp)
    ok(run("ec-export", exp / "model.pth", "-o", exp, *FAST, cwd=tmp_path))
    after = tree(exp)
    assert {k: after[k] for k in user} == user
    assert set(after) - set(user) == {"canny.onnx", "edge.onnx", "inpaint.onnx", "export.json"}


def test_reexport_removes_only_stale_artifacts_of_the_earlier_export(tiny_checkpoint, tiny_export_dir, tmp_path):
    """The earlier export listed fp16 files; a plain FP32 re-export drops them, and nothing else."""
    exp = _user_folder(tmp_path, tiny_checkpoint, tiny_export_dir)
    manifest = json.loads((exp / "export.json").read_text())
    for kind in ("canny", "edge", "inpaint"):
        shutil.copy(exp / f"{kind}.onnx", exp / f"{kind}.fp16.onnx")
        manifest["models"][kind]["fp16"] = f"{kind}.fp16.onnx"
    (exp / "export.json").write_text(json.dumps(manifest))
    (exp / "mine.fp16.onnx").write_bytes(b"not listed: the user's")
    ok(run("ec-export", exp / "model.pth", "-o", exp, *FAST, cwd=tmp_path))
    names = {p.name for p in exp.iterdir()}
    assert not {"canny.fp16.onnx", "edge.fp16.onnx", "inpaint.fp16.onnx"} & names
    assert {"mine.fp16.onnx", "model.pth", "notes.txt", "sub"} <= names


@pytest.mark.parametrize("clash", ("edge.onnx", "export.json", "folder:inpaint.onnx", "foreign_manifest"))
def test_a_file_the_export_did_not_write_is_never_overwritten(clash, tiny_checkpoint, tmp_path):
    exp = _user_folder(tmp_path, tiny_checkpoint)
    if clash.startswith("folder:"):
        (exp / clash.split(":")[1]).mkdir()
    elif clash == "foreign_manifest":  # the user's own export.json, not one ec-export wrote
        (exp / "export.json").write_text(json.dumps({"models": {"edge": {"fp32": "edge.onnx"}}}))
        (exp / "edge.onnx").write_bytes(b"the user's model")
    else:
        (exp / clash).write_text("the user's own file")
    before = tree(tmp_path)
    res = fails(run("ec-export", exp / "model.pth", "-o", exp, *FAST, cwd=tmp_path), "never overwrites")
    assert "Traceback" not in res.out and tree(tmp_path) == before


@pytest.mark.parametrize("kind", ("is_a_file", "under_a_file", "readonly"))
def test_unwritable_output_is_refused_before_any_work(kind, tiny_checkpoint, tmp_path):
    if kind == "is_a_file":
        target = tmp_path / "out"
        target.write_text("a file")
    elif kind == "under_a_file":
        (tmp_path / "f").write_text("a file")
        target = tmp_path / "f" / "export"
    else:
        target = readonly_dir(tmp_path) / "ec-hostile-export"
    before = tree(tmp_path)
    fails(run("ec-export", tiny_checkpoint, "-o", target, *FAST, cwd=tmp_path), "--output")
    assert tree(tmp_path) == before


def test_new_nested_output_gets_the_usual_modes_and_strict_json(tiny_checkpoint, tmp_path):
    """Under umask 022: folders 0755, files 0644 (not 0600), export.json strict, checkpoint path absolute."""
    out = tmp_path / "a" / "b" / "export"
    ok(run("ec-export", tiny_checkpoint, "-o", "a/b/export", *FAST, cwd=tmp_path, umask=0o022))
    assert mode(out) == 0o755
    assert {p.name: mode(p) for p in out.iterdir()} == {n: 0o644 for n in
                                                        ("canny.onnx", "edge.onnx", "inpaint.onnx", "export.json")}
    manifest = _strict(out / "export.json")
    assert manifest["source"]["checkpoints"][0]["path"] == str(tiny_checkpoint)
    assert _hidden(tmp_path / "a" / "b") == []


# ---------------------------------------------------------------- interrupted and killed exports
def _staging_dirs(*folders: Path) -> list[Path]:
    return [p for f in folders if f.is_dir() for p in f.iterdir() if p.is_dir() and "ec-export-" in p.name]


@pytest.mark.parametrize("sig", (signal.SIGTERM, signal.SIGINT))
def test_interrupted_export_exits_cleanly_and_leaves_nothing(sig, tiny_checkpoint, tiny_export_dir, tmp_path):
    exp = _user_folder(tmp_path, tiny_checkpoint, tiny_export_dir)
    before = tree(tmp_path)
    proc = start("ec-export", exp / "model.pth", "-o", exp, "-q", cwd=tmp_path)  # default 160 Canny rounds: slow
    assert wait_for(lambda: _staging_dirs(exp, tmp_path), timeout=120), "no staging folder appeared"
    res = stop(proc, sig)
    assert res.rc == 128 + sig, str(res)
    assert "Traceback" not in res.out and "interrupted" in res.out
    assert tree(tmp_path) == before  # staging removed, the earlier export and the user's files untouched


def test_a_later_export_cleans_the_staging_of_a_killed_one(tiny_checkpoint, tiny_export_dir, tmp_path):
    exp = _user_folder(tmp_path, tiny_checkpoint, tiny_export_dir)
    proc = start("ec-export", exp / "model.pth", "-o", exp, "-q", cwd=tmp_path)
    assert wait_for(lambda: _staging_dirs(exp, tmp_path), timeout=120)
    proc.kill()  # SIGKILL: nothing can clean up
    proc.wait(timeout=60)
    assert _staging_dirs(exp, tmp_path), "the killed export left no staging folder (nothing to test)"
    assert (exp / "notes.txt").is_file() and (exp / "model.pth").is_file()
    ok(run("ec-export", exp / "model.pth", "-o", exp, *FAST, cwd=tmp_path))
    assert _staging_dirs(exp, tmp_path) == []
    assert _hidden(exp) == [] and _hidden(tmp_path) == []


def test_stale_staging_of_a_dead_process_is_removed_and_a_live_one_kept(tiny_checkpoint, tmp_path):
    """Only staging folders whose process is gone are removed (a concurrent export keeps its own)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".export.ec-export-{dead.pid}-x1"
    live = tmp_path / f".export.ec-export-{os.getpid()}-live"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "edge.onnx").write_bytes(b"\0" * 1000)
    ok(run("ec-export", tiny_checkpoint, "-o", tmp_path / "export", *FAST, cwd=tmp_path))
    assert not stale.exists() and (live / "edge.onnx").is_file()


@pytest.mark.parametrize("args", (["onnx", "model.pth"], ["convert", "x.pth", "-o", "out"]))
def test_a_subcommand_that_does_not_exist_gets_a_hint_that_works(args, tmp_path):
    res = fails(run("ec-export", *args, cwd=tmp_path, timeout=60), "ec-export CHECKPOINT... -o DIR", rc=2)
    assert "engine" in res.out and "triton" in res.out
    assert tree(tmp_path) == {}


# ---------------------------------------------------------------- poisoned weights and damaged checkpoints
@pytest.mark.parametrize("poison", ("nan_inpaint", "inf_edge"))
def test_non_finite_weights_are_refused(poison, tmp_path):
    ckpt = tmp_path / "bad.pth"
    if poison == "nan_inpaint":
        write_tiny_checkpoint(ckpt, nan=True)
    else:
        import torch

        write_tiny_checkpoint(ckpt)
        state = torch.load(ckpt, weights_only=True)
        state["models"]["edge_generator"]["encoder.1.weight_orig"][0, 0, 0, 0] = float("inf")
        torch.save(state, ckpt)
    before = tree(tmp_path)
    fails(run("ec-export", ckpt, "-o", tmp_path / "export", *FAST, cwd=tmp_path), "nan/infinite")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("damage", ("empty", "truncated", "text", "directory_without_checkpoints"))
def test_damaged_checkpoint_is_a_clean_error(damage, tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad.pth"
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "truncated":
        bad.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    elif damage == "text":
        bad.write_text("not a checkpoint\n")
    else:
        bad.mkdir()
        (bad / "readme.txt").write_text("no .pth here")
    before = tree(tmp_path)
    fails(run("ec-export", bad, "-o", tmp_path / "export", *FAST, cwd=tmp_path), "bad.pth")
    assert tree(tmp_path) == before


def test_missing_checkpoint_is_a_clean_error(tmp_path):
    fails(run("ec-export", tmp_path / "nope.pth", "-o", tmp_path / "export", cwd=tmp_path), "nope.pth", rc=2)
    assert tree(tmp_path) == {}


# ---------------------------------------------------------------- options: types and ranges
BAD_OPTIONS = [
    (["--calib-size", "0"], "--calib-size"), (["--calib-size", "18"], "--calib-size"),
    (["--calib-size", "100000"], "--calib-size"), (["--calib-size", "abc"], "--calib-size"),
    (["--calib-size", "-64"], "--calib-size"),
    (["--opset", "16"], "--opset"), (["--opset", "24"], "--opset"), (["--opset", "x"], "--opset"),
    (["--sigma", "0"], "--sigma"), (["--sigma", "-1"], "--sigma"), (["--sigma", "nan"], "--sigma"),
    (["--sigma", "inf"], "--sigma"), (["--sigma", "40"], "--sigma"), (["--sigma", "abc"], "--sigma"),
    (["--canny-iterations", "-1"], "--canny-iterations"), (["--canny-iterations", "100000"], "--canny-iterations"),
    (["--canny-iterations", "1.5"], "--canny-iterations"),
    (["--workspace", "0"], "--workspace"), (["--calib-method", "mean"], "--calib-method"),
    (["--engine", "--shapes", "1x16x16"], "--shapes"), (["--engine", "--shapes", "4x64x64,1x32x32,1x16x16"], "--shapes"),
    (["--calib", "photos/"], "--calib"),
]


@pytest.mark.parametrize("args,option", BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_option_is_a_one_line_error_before_any_work(args, option, tiny_checkpoint, tmp_path):
    res = fails(run("ec-export", tiny_checkpoint, "-o", tmp_path / "export", *args, cwd=tmp_path, timeout=60), option)
    assert res.rc in (1, 2)
    assert tree(tmp_path) == {}


def test_unwritable_timing_cache_is_refused_before_any_work(tiny_checkpoint, tmp_path):
    (tmp_path / "f").write_text("a file")
    fails(run("ec-export", tiny_checkpoint, "-o", tmp_path / "export", "--engine", "--timing-cache",
              tmp_path / "f" / "cache.bin", cwd=tmp_path), "--timing-cache")
    assert sorted(tree(tmp_path)) == ["f"]
