"""The package promises Python 3.10 (``requires-python``) and the runtime promises numpy 1.x.

JetPack 6 ships Python 3.10 and pins numpy 1.x on many boards, so no module may use syntax or
standard library names added in 3.11+, and ``ec_runtime`` (plus the torch-free ``ec-export engine``
path) may not use numpy 2-only names. Run-time proof lives in ``scripts/check_numpy1.sh`` (a separate
venv with numpy 1.26, on Python 3.10 where one is installed) and ``test_numpy1.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every package pyproject.toml ships (its setuptools `include` patterns), so a new one is covered too.
_INCLUDE = re.search(r"^include = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.M).group(1)
PACKAGES = tuple(sorted({p.name for pattern in re.findall(r'"([^"]+)"', _INCLUDE) for p in ROOT.glob(pattern)
                         if (p / "__init__.py").is_file()}))
# What a Jetson runtime install imports: ec_runtime, and `ec-export engine` (no torch).
TORCH_FREE = [*sorted((ROOT / "ec_runtime").rglob("*.py")),
              *(ROOT / "ec_export" / n for n in ("__init__.py", "cli.py", "engine.py", "errors.py")),
              *(ROOT / "ec_train" / n for n in ("__init__.py", "errors.py"))]

# Standard library modules and names that Python 3.11 or later added.
NEW_MODULES = {"tomllib": "3.11", "wsgiref.types": "3.11"}
NEW_NAMES = {
    ("typing", "Self"): "3.11", ("typing", "LiteralString"): "3.11", ("typing", "Never"): "3.11",
    ("typing", "assert_never"): "3.11", ("typing", "assert_type"): "3.11", ("typing", "reveal_type"): "3.11",
    ("typing", "Required"): "3.11", ("typing", "NotRequired"): "3.11", ("typing", "TypeVarTuple"): "3.11",
    ("typing", "Unpack"): "3.11", ("typing", "dataclass_transform"): "3.11", ("typing", "override"): "3.12",
    ("typing", "TypeAliasType"): "3.12", ("typing", "ReadOnly"): "3.13", ("typing", "TypeIs"): "3.13",
    ("enum", "StrEnum"): "3.11", ("enum", "verify"): "3.11", ("enum", "member"): "3.11",
    ("datetime", "UTC"): "3.11", ("contextlib", "chdir"): "3.11", ("hashlib", "file_digest"): "3.11",
    ("operator", "call"): "3.11", ("asyncio", "TaskGroup"): "3.11", ("asyncio", "timeout"): "3.11",
    ("asyncio", "Runner"): "3.11", ("itertools", "batched"): "3.12", ("math", "cbrt"): "3.11",
    ("math", "exp2"): "3.11", ("math", "sumprod"): "3.12", ("pathlib.Path", "walk"): "3.12",
}
NEW_BUILTINS = {"ExceptionGroup": "3.11", "BaseExceptionGroup": "3.11"}
# numpy attributes that exist only in numpy 2.x (numpy 1.26 raises AttributeError on them).
NUMPY2_ONLY = {"bool", "long", "ulong", "concat", "unstack", "permute_dims", "pow", "isdtype", "astype",
               "trapezoid", "cumulative_sum", "cumulative_prod", "matrix_transpose", "vecdot", "matvec",
               "vecmat", "strings", "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh",
               "bitwise_left_shift", "bitwise_right_shift", "bitwise_invert"}


def _modules(packages=PACKAGES) -> list[Path]:
    return [p for pkg in packages for p in sorted((ROOT / pkg).rglob("*.py"))]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_module_parses_as_python_310(path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 10))


def _stdlib_problems(tree: ast.AST) -> list[str]:
    problems = []
    aliases: dict[str, str] = {}  # local name -> module, for `import typing as t`
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name] = a.name
                if a.name in NEW_MODULES:
                    problems.append(f"line {node.lineno}: import {a.name} (Python {NEW_MODULES[a.name]})")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in NEW_MODULES:
                problems.append(f"line {node.lineno}: from {node.module} (Python {NEW_MODULES[node.module]})")
            for a in node.names:
                if (node.module, a.name) in NEW_NAMES:
                    problems.append(f"line {node.lineno}: from {node.module} import {a.name} "
                                    f"(Python {NEW_NAMES[(node.module, a.name)]})")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if module and (module, node.attr) in NEW_NAMES:
                problems.append(f"line {node.lineno}: {module}.{node.attr} (Python {NEW_NAMES[(module, node.attr)]})")
        elif isinstance(node, ast.Name) and node.id in NEW_BUILTINS:
            problems.append(f"line {node.lineno}: {node.id} (Python {NEW_BUILTINS[node.id]})")
    return problems


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_no_standard_library_names_newer_than_310(path):
    problems = _stdlib_problems(ast.parse(path.read_text(encoding="utf-8")))
    assert not problems, f"{_rel(path)} needs a newer Python than the promised 3.10:\n" + "\n".join(problems)


def _numpy2_problems(tree: ast.AST) -> list[str]:
    numpy_names = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for a in node.names if a.name == "numpy"}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "numpy":
            problems += [f"line {node.lineno}: from numpy import {a.name}" for a in node.names if a.name in NUMPY2_ONLY]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in numpy_names:
            if node.attr in NUMPY2_ONLY:
                problems.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name) and node.func.value.id in numpy_names
              and node.func.attr in ("asarray", "array") and any(k.arg == "copy" and isinstance(k.value, ast.Constant)
                                                                   and k.value.value is None for k in node.keywords)):
            problems.append(f"line {node.lineno}: {node.func.value.id}.{node.func.attr}(copy=None)")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "asarray"
              and isinstance(node.func.value, ast.Name) and node.func.value.id in numpy_names
              and any(k.arg == "copy" for k in node.keywords)):
            problems.append(f"line {node.lineno}: {node.func.value.id}.asarray(copy=...)")
    return problems


@pytest.mark.parametrize("path", TORCH_FREE, ids=_rel)
def test_runtime_uses_no_numpy2_only_names(path):
    problems = _numpy2_problems(ast.parse(path.read_text(encoding="utf-8")))
    assert not problems, f"{_rel(path)} uses numpy 2-only API (breaks on numpy 1.26):\n" + "\n".join(problems)


@pytest.mark.parametrize("source, count", [
    ("import tomllib", 1), ("from typing import Self", 1), ("import typing as t\nx: t.Self", 1),
    ("raise ExceptionGroup('x', [])", 1), ("from datetime import UTC", 1), ("import typing\ntyping.List", 0),
])
def test_the_stdlib_scan_finds_what_it_should(source, count):
    assert len(_stdlib_problems(ast.parse(source))) == count


@pytest.mark.parametrize("source, count", [
    ("import numpy as np\nnp.bool", 1), ("import numpy as np\nnp.asarray(x, copy=False)", 1),
    ("from numpy import concat", 1), ("import numpy as np\nnp.bool_\nnp.float32", 0),
    ("import numpy\nnumpy.array(x, copy=None)", 1),
])
def test_the_numpy_scan_finds_what_it_should(source, count):
    assert len(_numpy2_problems(ast.parse(source))) == count


def test_every_shipped_package_is_scanned():
    assert set(PACKAGES) >= {"ec_runtime", "ec_export", "ec_train", "benchmarks"}


def test_python_310_syntax_is_refused():
    with pytest.raises(SyntaxError):
        ast.parse("try:\n    pass\nexcept* ValueError:\n    pass\n", feature_version=(3, 10))
