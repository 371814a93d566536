"""Hostile cases for ``ec-bench`` and ``ec-eval``: damaged export directories, bad options,
unwritable report targets, precisions the export lacks, and a missing torch baseline.

Each case asserts the exit code, that no traceback was printed, and the files afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.hostile.battery import fails, ok, readonly_dir, run, tree

# The smallest real work either command can do (a wrong order of checks shows up as a timeout).
QUICK = {
    "ec-bench": ["--backends", "onnxruntime", "--precisions", "fp32", "--sizes", "16", "--batch", "1",
                 "--iters", "1", "-q"],
    "ec-eval": ["--precisions", "fp32", "--size", "16", "--masks-per-bin", "1", "-q"],
}
# Work that would run for many minutes: used where an error must come before any work.
LONG = {
    "ec-bench": ["--backends", "onnxruntime", "--precisions", "fp32", "--sizes", "512", "--batch", "4",
                 "--iters", "100000", "-q"],
    "ec-eval": ["--precisions", "fp32", "--size", "2048", "--masks-per-bin", "1000", "-q"],
}
COMMANDS = ("ec-bench", "ec-eval")


def _manifest(export: Path) -> dict:
    return json.loads((export / "export.json").read_text())


def _set_manifest(export: Path, value) -> None:
    (export / "export.json").write_text(value if isinstance(value, str) else json.dumps(value))


def _damage(export: Path, how: str) -> Path:
    """Damage a copy of an export directory in one way; returns the path to pass to the command."""
    manifest = _manifest(export)
    if how == "missing":
        shutil.rmtree(export)
    elif how == "is_a_file":
        shutil.rmtree(export)
        export.write_text("not a directory")
    elif how == "empty":
        shutil.rmtree(export)
        export.mkdir()
    elif how == "no_manifest":
        (export / "export.json").unlink()
    elif how == "manifest_is_a_folder":
        (export / "export.json").unlink()
        (export / "export.json").mkdir()
    elif how == "empty_manifest":
        _set_manifest(export, "")
    elif how == "truncated_manifest":
        text = (export / "export.json").read_text()
        _set_manifest(export, text[: len(text) // 2])
    elif how == "malformed_manifest":
        _set_manifest(export, "{models: edge.onnx")
    elif how == "manifest_is_a_list":
        _set_manifest(export, [manifest])
    elif how == "models_not_a_mapping":
        _set_manifest(export, {**manifest, "models": "edge.onnx"})
    elif how == "no_edge_model":
        manifest["models"].pop("edge")
        _set_manifest(export, manifest)
    elif how == "model_name_not_a_string":
        manifest["models"]["edge"]["fp32"] = 7
        _set_manifest(export, manifest)
    elif how == "no_architecture":
        manifest["source"].pop("architecture")
        _set_manifest(export, manifest)
    elif how == "model_file_missing":
        (export / "edge.onnx").unlink()
    elif how == "truncated_model":
        data = (export / "inpaint.onnx").read_bytes()
        (export / "inpaint.onnx").write_bytes(data[: len(data) // 3])
    elif how == "empty_model":
        (export / "edge.onnx").write_bytes(b"")
    else:
        raise AssertionError(how)
    return export


DAMAGES = ("missing", "is_a_file", "empty", "no_manifest", "manifest_is_a_folder", "empty_manifest",
           "truncated_manifest", "malformed_manifest", "manifest_is_a_list", "models_not_a_mapping",
           "no_edge_model", "model_name_not_a_string", "no_architecture", "model_file_missing",
           "truncated_model", "empty_model")


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("command", COMMANDS)
def test_damaged_export_dir_is_a_clean_error(command, how, export_copy, tmp_path):
    target = _damage(export_copy, how)
    work = tmp_path / "work"
    work.mkdir()
    before = tree(tmp_path)
    res = run(command, target, *QUICK[command], cwd=work)
    fails(res)
    assert "export" in res.out.lower()
    assert tree(tmp_path) == before  # no report written, the damaged export left as it was


# ---------------------------------------------------------------- options: types and ranges
BENCH_BAD_OPTIONS = [
    (["--sizes", "abc"], "--sizes"), (["--sizes", "0"], "--sizes"), (["--sizes", "18"], "--sizes"),
    (["--sizes", ","], "--sizes"), (["--sizes", "-256"], "--sizes"), (["--sizes", "100000"], "--sizes"),
    (["--batch", "0"], "--batch"), (["--batch", "-1"], "--batch"), (["--batch", "x"], "--batch"),
    (["--batch", "100000"], "--batch"),
    (["--iters", "0"], "--iters"), (["--warmup", "0"], "--warmup"), (["--iters", "1.5"], "--iters"),
    (["--threads", "0"], "--threads"), (["--threads", "100000"], "--threads"), (["--backends", "cuda"], "--backends"),
    (["--precisions", "fp64"], "--precisions"), (["--precisions", ""], "--precisions"),
]


@pytest.mark.parametrize("args,option", BENCH_BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bench_bad_option_is_a_clean_error(args, option, tiny_export_dir, tmp_path):
    res = run("ec-bench", tiny_export_dir, *LONG["ec-bench"], *args, cwd=tmp_path, timeout=60)
    fails(res, option, rc=2)
    assert tree(tmp_path) == {}


EVAL_BAD_OPTIONS = [
    (["--size", "15"], "--size"), (["--size", "abc"], "--size"), (["--size", "0"], "--size"),
    (["--size", "99999"], "--size"),
    (["--masks-per-bin", "0"], "--masks-per-bin"), (["--seed", "-1"], "--seed"), (["--seed", "x"], "--seed"),
    (["--threads", "0"], "--threads"), (["--threads", "100000"], "--threads"), (["--precisions", "bf16"], "--precisions"),
]


@pytest.mark.parametrize("args,option", EVAL_BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_eval_bad_option_is_a_clean_error(args, option, tiny_export_dir, tmp_path):
    res = run("ec-eval", tiny_export_dir, *LONG["ec-eval"], *args, cwd=tmp_path, timeout=60)
    fails(res, option, rc=2)
    assert tree(tmp_path) == {}


# ---------------------------------------------------------------- report targets
def _target(kind: str, tmp_path: Path) -> Path:
    if kind == "readonly":
        return readonly_dir(tmp_path) / "ec-hostile" / "report"
    if kind == "under_a_file":
        (tmp_path / "plain.txt").write_text("a file, not a folder")
        return tmp_path / "plain.txt" / "report"
    if kind == "existing_folder":
        (tmp_path / "report.json").mkdir()
        (tmp_path / "report.md").mkdir()
        (tmp_path / "report.png").mkdir()
        return tmp_path / "report"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ("readonly", "under_a_file", "existing_folder"))
@pytest.mark.parametrize("option", ("--json", "--markdown", "--plot"))
def test_bench_unwritable_report_fails_before_the_benchmark(option, kind, tiny_export_dir, tmp_path):
    """With 100000 iterations the benchmark would outlast the timeout: the check must come first."""
    base = _target(kind, tmp_path)
    suffix = {"--json": ".json", "--markdown": ".md", "--plot": ".png"}[option]
    before = tree(tmp_path)
    res = run("ec-bench", tiny_export_dir, *LONG["ec-bench"], option, f"{base}{suffix}", cwd=tmp_path, timeout=60)
    fails(res, option)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind", ("readonly", "under_a_file", "existing_folder"))
@pytest.mark.parametrize("option", ("--json", "--markdown"))
def test_eval_unwritable_report_fails_before_the_evaluation(option, kind, tiny_export_dir, tmp_path):
    base = _target(kind, tmp_path)
    suffix = {"--json": ".json", "--markdown": ".md"}[option]
    before = tree(tmp_path)
    res = run("ec-eval", tiny_export_dir, *LONG["ec-eval"], option, f"{base}{suffix}", cwd=tmp_path, timeout=60)
    fails(res, option)
    assert tree(tmp_path) == before


def _strict_json(path: Path):
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_bench_creates_missing_report_folders_and_writes_strict_json(tiny_export_dir, tmp_path):
    res = run("ec-bench", tiny_export_dir, *QUICK["ec-bench"], "--json", "new/deeper/r.json",
              "--markdown", "new/r.md", "--plot", "new/r.png", cwd=tmp_path)
    ok(res, "wrote")
    report = _strict_json(tmp_path / "new/deeper/r.json")
    assert report["rows"] and (tmp_path / "new/r.md").is_file()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_eval_creates_missing_report_folders_and_writes_strict_json(tiny_export_dir, tmp_path):
    res = run("ec-eval", tiny_export_dir, *QUICK["ec-eval"], "--json", "a/b/q.json", "--markdown", "a/q.md",
              cwd=tmp_path)
    ok(res, "wrote")
    assert _strict_json(tmp_path / "a/b/q.json")["rows"]
    assert (tmp_path / "a/q.md").is_file()


# ---------------------------------------------------------------- precisions the export lacks
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("precisions", ("fp16", "int8", "fp16,int8"))
def test_precision_the_export_lacks_is_a_clean_error(command, precisions, tiny_export_dir, tmp_path):
    args = [a for a in LONG[command]]
    args[args.index("--precisions") + 1] = precisions
    res = run(command, tiny_export_dir, *args, cwd=tmp_path, timeout=60)
    fails(res, precisions.split(",")[0])
    # the hint names real ec-export flags (--fp16 / --int8), never a nonexistent --precisions option of ec-export
    assert "ec-export" in res.out and f"--{precisions.split(',')[0]}" in res.out
    assert "ec-export onnx" not in res.out
    assert tree(tmp_path) == {}


# ---------------------------------------------------------------- the torch baseline
def test_bench_says_when_the_torch_baseline_is_missing(export_copy, tmp_path):
    """An export whose checkpoint path does not resolve: the run goes on without torch, and says so."""
    manifest = _manifest(export_copy)
    manifest["source"]["checkpoints"] = [{"path": "tiny.pth", "sha256": "0" * 64}]
    _set_manifest(export_copy, manifest)
    work = tmp_path / "work"
    work.mkdir()
    args = [a for a in QUICK["ec-bench"]]
    args[args.index("--backends") + 1] = "torch,onnxruntime"
    res = ok(run("ec-bench", export_copy, *args, cwd=work))
    assert "torch baseline" in res.out and "tiny.pth" in res.out
    report = _strict_json(work / "ec-bench/report.json")
    assert {r["backend"] for r in report["rows"]} == {"onnxruntime"}
    assert "torch" in report.get("baseline_missing", "") or report["skipped"]


def test_bench_refuses_a_changed_checkpoint_as_baseline(export_copy, tiny_checkpoint, tmp_path):
    """The checkpoint at the recorded path is not the one exported (other sha256): no silent baseline."""
    other = tmp_path / "other.pth"
    from tests.hostile.conftest import write_tiny_checkpoint

    write_tiny_checkpoint(other, seed=5)
    manifest = _manifest(export_copy)
    manifest["source"]["checkpoints"][0]["path"] = str(other)
    _set_manifest(export_copy, manifest)
    args = [a for a in QUICK["ec-bench"]]
    args[args.index("--backends") + 1] = "torch,onnxruntime"
    res = ok(run("ec-bench", export_copy, *args, cwd=tmp_path))
    assert "torch baseline" in res.out and "sha256" in res.out


def test_bench_only_torch_without_a_baseline_is_a_clean_error(export_copy, tmp_path):
    manifest = _manifest(export_copy)
    manifest["source"]["checkpoints"] = [{"path": str(tmp_path / "gone.pth"), "sha256": "0" * 64}]
    _set_manifest(export_copy, manifest)
    before = tree(tmp_path)
    res = run("ec-bench", export_copy, "--backends", "torch", "--sizes", "16", "--batch", "1", "--iters", "1",
              "-q", cwd=tmp_path, timeout=120)
    fails(res, "gone.pth")
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- held-out images for ec-eval
@pytest.mark.parametrize("kind", ("empty", "no_images", "corrupt", "missing"))
def test_eval_bad_images_folder_is_a_clean_error(kind, tiny_export_dir, tmp_path):
    images = tmp_path / "imgs"
    if kind != "missing":
        images.mkdir()
    if kind == "no_images":
        (images / "notes.txt").write_text("no photos here")
    if kind == "corrupt":
        (images / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    before = tree(tmp_path)
    res = run("ec-eval", tiny_export_dir, *QUICK["ec-eval"], "--images", images, cwd=tmp_path, timeout=120)
    fails(res, "imgs")
    assert tree(tmp_path) == before
