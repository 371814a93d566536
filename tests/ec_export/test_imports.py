"""The modules of ec_export import each other one way (no cycles, even through function-level imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import ec_export

PACKAGE = Path(ec_export.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every ``ec_export.X`` module named by an import anywhere in ``path`` (top level or in functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "ec_export":
                found |= {f"ec_export.{a.name}" for a in node.names}
            elif node.module.startswith("ec_export."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ec_export.")}
    return found


def test_ec_export_import_graph_has_no_cycles():
    graph = {f"ec_export.{p.stem}": _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*path, module, dep])
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
