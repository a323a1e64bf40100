"""The `rmm` CLI's modules: one per command group, no import circle, main.py imported by none."""

from __future__ import annotations

import ast
from pathlib import Path

import click

from rmm_cli.main import GROUPS, main

PACKAGE = Path(__file__).resolve().parents[2] / "rmm_cli"


def _own_imports(path: Path) -> set[str]:
    """Return the rmm_cli modules `path` imports (anywhere in it, functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "rmm_cli":
                found.update(f"rmm_cli.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("rmm_cli.")}


def _graph() -> dict[str, set[str]]:
    return {
        f"rmm_cli.{path.stem}": _own_imports(path)
        for path in sorted(PACKAGE.glob("*.py"))
        if path.stem != "__init__"
    }


def test_no_module_imports_main() -> None:
    importers = sorted(name for name, imports in _graph().items() if "rmm_cli.main" in imports)
    assert importers == []


def test_no_import_circle() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import circle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for imported in sorted(graph.get(name, set())):
            visit(imported, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())


def test_every_group_is_on_the_root_once() -> None:
    assert len({command.name for command in GROUPS}) == len(GROUPS)
    for command in GROUPS:
        assert main.commands[command.name or ""] is command
    assert set(main.commands) == {command.name for command in GROUPS}
    assert all(isinstance(command, click.Command) for command in GROUPS)
