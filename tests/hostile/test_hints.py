"""Every command a message or docstring suggests must exist: `ec-export onnx ...` or an option a
command does not have is a hint that fails the user who follows it.

The sources are scanned for backticked ``ec-*`` command lines; each one's command, subcommand and
options are looked up in the click commands the console scripts run.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ec_train", "ec_export", "ec_runtime", "benchmarks")
HINT = re.compile(r"`(ec-[a-z]+(?:[ \t][^`\n]*)?)`")


def _scripts() -> dict[str, str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _command(script: str) -> click.Command:
    module, func = _scripts()[script].split(":")
    return getattr(importlib.import_module(module), func)


def _options(cmd: click.Command) -> set[str]:
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}


def _hints() -> list[tuple[str, str]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = re.sub(r"\{[^{}]*\}", "X", path.read_text())  # f-string fields become a placeholder
            for m in HINT.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                found.append((f"{path.relative_to(ROOT)}:{line}", m.group(1)))
    return found


HINTS = _hints()


def test_the_scan_finds_the_hints():
    assert len(HINTS) > 20 and any("ec-export" in h for _, h in HINTS)


@pytest.mark.parametrize("where,hint", HINTS, ids=[f"{w} {h}"[:90] for w, h in HINTS])
def test_every_suggested_command_exists(where, hint):
    tokens = hint.split()
    script = tokens[0]
    assert script in _scripts(), f"{where}: `{hint}` names no console script"
    cmd = _command(script)
    args = tokens[1:]
    if isinstance(cmd, click.Group):
        positional = [t for t in args if not t.startswith("-")]
        if positional and positional[0] in cmd.commands:
            args.remove(positional[0])
            cmd = cmd.commands[positional[0]]
        else:
            default = getattr(cmd, "default_command", "export")
            assert default in cmd.commands, f"{where}: `{hint}` needs a subcommand"
            assert not (positional and positional[0].isidentifier() and positional[0].islower()
                        and "." not in positional[0] and positional[0] not in ("X", "export", "photo", "dir")), \
                f"{where}: `{hint}`: {positional[0]!r} is not an ec-export subcommand ({', '.join(cmd.commands)})"
            cmd = cmd.commands[default]
    options = _options(cmd)
    for token in args:
        if token.startswith("-") and token not in ("-", "--") and "X" not in token and not token[1:2].isdigit():
            name = token.split("=")[0].rstrip(".,;:)")
            assert name in options, f"{where}: `{hint}`: {script} {cmd.name} has no option {name}"


def test_config_errors_name_real_ec_train_flags():
    """ConfigError messages name a field by its flag; every such flag must be an ec-train option
    that sets that very field."""
    from ec_train.config import CLI_FLAGS

    cmd = _command("ec-train")
    dests = {opt: p.name for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    for field, flag in CLI_FLAGS.items():
        assert dests.get(flag) == field, f"{flag} does not set {field} (it sets {dests.get(flag)})"
