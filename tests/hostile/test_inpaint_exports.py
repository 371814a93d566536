"""Hostile export directories: ExportDir.open, Inpainter.from_dir and ec-inpaint --model.

Every broken export must give one clear error from the ec_runtime exception root (never another
exception type, never a traceback), name the path, and suggest a command that exists.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from ec_runtime.errors import EcRuntimeError
from ec_runtime.pipeline import ExportDir, Inpainter
from tests.hostile.inpaint_helpers import demo_export, export_with_manifest, inpaint_cli, pair, snapshot  # noqa: F401

GOOD = json.loads((__import__("tests.hostile.inpaint_helpers", fromlist=["DEMO"]).DEMO / "export.json").read_text())


def _manifest(**changes) -> str:
    m = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is _DROP:
            m.pop(key, None)
        else:
            m[key] = value
    return json.dumps(m)


_DROP = object()

# (case id, export.json text or None, words the message must contain)
BROKEN_MANIFESTS = [
    ("no-manifest", None, ["export.json", "ec-export"]),
    ("empty-file", "", ["export.json", "empty"]),
    ("whitespace", "  \n", ["export.json", "empty"]),
    ("truncated", json.dumps(GOOD)[:200], ["export.json", "not valid JSON"]),
    ("garbage", "\x00\x01binary", ["export.json"]),
    ("not-utf8", b"\xff\xfe\x00{", ["export.json"]),
    ("list", "[1, 2, 3]", ["export.json", "object"]),
    ("string", '"models"', ["export.json", "object"]),
    ("null", "null", ["export.json", "object"]),
    ("no-models", _manifest(models=_DROP), ["models"]),
    ("models-list", _manifest(models=["edge.onnx"]), ["models"]),
    ("models-empty", _manifest(models={}), ["models"]),
    ("no-edge", _manifest(models={"canny": {"fp32": "canny.onnx"}, "inpaint": {"fp32": "inpaint.onnx"}}), ["edge"]),
    ("kind-string", _manifest(models={**GOOD["models"], "edge": "edge.onnx"}), ["edge"]),
    ("name-number", _manifest(models={**GOOD["models"], "edge": {"fp32": 5}}), ["models.edge.fp32"]),
    ("name-null", _manifest(models={**GOOD["models"], "inpaint": {"fp32": None}}), ["models.inpaint.fp32"]),
    ("name-escapes", _manifest(models={**GOOD["models"], "edge": {"fp32": "../edge.onnx"}}), ["outside"]),
    ("name-absolute", _manifest(models={**GOOD["models"], "edge": {"fp32": "/etc/passwd"}}), ["outside"]),
    ("engines-list", _manifest(engines=["x"]), ["engines"]),
    ("engine-no-file", _manifest(engines={"edge.fp32": {"sidecar": "x.json"}}), ["engines.edge.fp32"]),
    ("wrong-format", _manifest(format="something/else"), ["format"]),
    ("deep-nesting", "[" * 100000 + "]" * 100000, ["export.json"]),
]


@pytest.mark.parametrize("case,text,words", BROKEN_MANIFESTS, ids=[c[0] for c in BROKEN_MANIFESTS])
def test_broken_manifest_is_one_clear_error(tmp_path, demo_export, case, text, words):
    root = export_with_manifest(tmp_path / "exp", demo_export, text)
    with pytest.raises(EcRuntimeError) as err:
        ExportDir.open(root)
    message = str(err.value)
    assert str(root) in message and "\n" not in message
    for word in words:
        assert word in message, message
    with pytest.raises(EcRuntimeError):
        Inpainter.from_dir(root)


@pytest.mark.parametrize("case,text,words", BROKEN_MANIFESTS[::3], ids=[c[0] for c in BROKEN_MANIFESTS[::3]])
def test_broken_manifest_in_the_cli_writes_nothing(tmp_path, demo_export, case, text, words):
    root = export_with_manifest(tmp_path / "exp", demo_export, text)
    ip, mp, _, _ = pair(tmp_path / "in")
    before = snapshot(tmp_path / "in")
    out = inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "out.png", "--model", root], code=1)
    assert str(root) in out
    assert not (tmp_path / "out.png").exists() and snapshot(tmp_path / "in") == before


def test_missing_directory_file_and_manifest_passed_as_directory(tmp_path, demo_export):
    with pytest.raises(EcRuntimeError, match="not found.*ec-export"):
        ExportDir.open(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(EcRuntimeError, match="is a file"):
        ExportDir.open(tmp_path / "file")
    with pytest.raises(EcRuntimeError, match="pass the directory"):
        ExportDir.open(demo_export / "export.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EcRuntimeError, match="empty"):
        ExportDir.open(tmp_path / "empty")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_manifest(tmp_path, demo_export):
    root = export_with_manifest(tmp_path / "exp", demo_export, json.dumps(GOOD))
    (root / "export.json").chmod(0)
    try:
        with pytest.raises(EcRuntimeError, match="cannot read"):
            ExportDir.open(root)
    finally:
        (root / "export.json").chmod(0o644)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "directory"])
def test_damaged_model_file(tmp_path, demo_export, damage):
    root = tmp_path / "exp"
    root.mkdir()
    (root / "export.json").write_text(json.dumps(GOOD))
    for f in demo_export.glob("*.onnx"):
        (root / f.name).symlink_to(f)
    (root / "inpaint.onnx").unlink()
    data = (demo_export / "inpaint.onnx").read_bytes()
    if damage == "truncated":
        (root / "inpaint.onnx").write_bytes(data[: len(data) // 3])
    elif damage == "empty":
        (root / "inpaint.onnx").write_bytes(b"")
    elif damage == "garbage":
        (root / "inpaint.onnx").write_bytes(b"not an onnx model at all" * 10)
    else:
        (root / "inpaint.onnx").mkdir()
    with pytest.raises(EcRuntimeError) as err:
        Inpainter.from_dir(root)
    message = str(err.value)
    assert "inpaint.onnx" in message and "ec-export" in message and "\n" not in message
    ip, mp, _, _ = pair(tmp_path / "in")
    out = inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "o.png", "--model", root], code=1)
    assert "inpaint.onnx" in out and not (tmp_path / "o.png").exists()


def test_missing_precision_hint_is_a_real_flag(demo_export):
    with pytest.raises(EcRuntimeError) as err:
        Inpainter.from_dir(demo_export, precision="fp16")
    message = str(err.value)
    assert "--fp16" in message and "--precisions" not in message and "fp32" in message
    assert ExportDir.open(demo_export).precisions() == ["fp32"]


def _hinted_commands(message: str) -> list[list[str]]:
    return [c.split() for c in re.findall(r"`([^`]+)`", message)]


def test_every_hint_names_a_command_that_exists(tmp_path, demo_export):
    """Each `ec-...` command quoted in an error message parses with the real CLI."""
    from click.testing import CliRunner

    from ec_export.cli import main as export_main

    messages = []
    for make in (lambda: ExportDir.open(tmp_path / "nowhere"),
                 lambda: Inpainter.from_dir(demo_export, precision="int8"),
                 lambda: Inpainter.from_dir(demo_export, backend="tensorrt"),
                 lambda: ExportDir.open(export_with_manifest(tmp_path / "b", demo_export, "[]"))):
        with pytest.raises(EcRuntimeError) as err:
            make()
        messages.append(str(err.value))
    commands = [c for m in messages for c in _hinted_commands(m) if c and c[0] == "ec-export"]
    assert len(commands) >= 4, messages
    for cmd in commands:
        args = cmd[1:]
        sub = export_main.commands.get(args[0]) if args else None
        # the command must parse: `--help` after a known subcommand (or the implied `export`) must succeed
        target = [args[0], "--help"] if sub else ["export", "--help"]
        assert CliRunner().invoke(export_main, target).exit_code == 0, cmd
        options = [a for a in args if a.startswith("--")]
        help_text = CliRunner().invoke(export_main, target).output
        for opt in options:
            assert opt in help_text, f"{cmd}: {opt} is not an option of ec-export {target[0]}"


def test_install_and_command_hints_in_the_runtime_name_real_extras_and_commands():
    """Every `pip install ec-deploy[X]` in ec_runtime names an extra of pyproject.toml, and every
    back-quoted `ec-...` command is a console script the package installs."""
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras, scripts = set(project["optional-dependencies"]), set(project["scripts"])
    source = "\n".join(p.read_text() for p in (root / "ec_runtime").glob("*.py"))
    named_extras = re.findall(r"pip install ec-deploy\[([a-z,]+)\]", source)
    named_commands = re.findall(r"`(ec-[a-z]+)[ `]", source)
    assert named_extras and named_commands
    for group in named_extras:
        assert set(group.split(",")) <= extras, group
    assert set(named_commands) <= scripts, set(named_commands) - scripts
