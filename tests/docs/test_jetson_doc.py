"""docs/jetson.md names only options that exist and the same pins that scripts/check_numpy1.sh tests."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "jetson.md").read_text()


def _help(command: str) -> str:
    from benchmarks.cli import main as ec_bench
    from ec_export.cli import main as ec_export
    from ec_runtime.cli import main as ec_inpaint

    cli, args = {"ec-export engine": (ec_export, ["engine", "--help"]), "ec-inpaint": (ec_inpaint, ["--help"]),
                 "ec-bench": (ec_bench, ["--help"])}[command]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.output


def _uses(command: str) -> list[str]:
    """The --options the doc's command lines give ``command``."""
    pattern = re.escape(command) + r"[^\n`]*"
    return sorted({flag for line in re.findall(pattern, DOC) for flag in re.findall(r"(--[a-z][a-z0-9-]*)", line)})


@pytest.mark.parametrize("command", ["ec-export engine", "ec-inpaint", "ec-bench"])
def test_every_option_the_doc_uses_exists(command):
    flags = _uses(command)
    assert flags, f"the doc shows no {command} options"
    help_text = _help(command)
    missing = [f for f in flags if f not in help_text]
    assert not missing, f"docs/jetson.md gives {command} options it does not have: {missing}"


def test_gpu_check_options_in_the_doc_exist(capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    gpu_check = importlib.import_module("gpu_check")
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--help"])
    help_text = capsys.readouterr().out
    flags = _uses("scripts/gpu_check.sh")
    assert {"--export", "--out", "--only"} <= set(flags)
    assert not [f for f in flags if f not in help_text]


def test_the_doc_recommends_the_tested_numpy1_pins():
    pins = dict(re.findall(r"^([a-z-]+)==([0-9.]+)", (ROOT / "scripts" / "requirements-numpy1.txt").read_text(), re.M))
    assert set(pins) == {"numpy", "opencv-python-headless", "onnxruntime"}
    for name, version in pins.items():
        assert f"{name}=={version}" in DOC, f"docs/jetson.md should pin {name}=={version} like check_numpy1.sh"
