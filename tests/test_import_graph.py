"""The arrows between the packages: each side imports only the shared packages and its own.

rmm_agent, rmm_server and rmm_cli import nothing of each other (an `rmm[cli]` or `rmm[agent]`
install has only its own part); rmm_common holds what they share and imports only the standard
library and the generated protocol (rmm_proto). Read from the source with `ast`, so an import
inside a function or under TYPE_CHECKING counts too.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rmm_agent", "rmm_server", "rmm_cli", "rmm_common")

# Which of our top-level packages each package must not import.
FORBIDDEN = {
    "rmm_server": {"rmm_agent", "rmm_cli"},
    "rmm_cli": {"rmm_agent", "rmm_server"},
    "rmm_agent": {"rmm_server", "rmm_cli"},
    "rmm_common": {"rmm_agent", "rmm_server", "rmm_cli"},
}
# What rmm_common may import besides the standard library.
COMMON_MAY_IMPORT = {"rmm_common", "rmm_proto"}

# Known exceptions, each (importing package, imported module): reason. Keyed by package, not
# file, so that moving code within a package keeps them; remove an entry with the import it
# names: an entry whose import is gone fails below, so none outlives its reason.
ALLOWED = {
    ("rmm_cli", "rmm_server.policy"): (
        "policy validate/explain/test run the server's policy engine locally (the server "
        "extra, imported lazily with a message when missing)"
    ),
    ("rmm_cli", "rmm_server.alerts.unittests"): (
        "policy test --unit runs the server's alert unit tests locally (the server extra)"
    ),
    ("rmm_common", "click"): (
        "cliparams.py: option checks shared by the three command lines, each of which has click"
    ),
    ("rmm_common", "click.core"): "as above",
    ("rmm_common", "yaml"): (
        "yamlnodes.py, the one strict YAML reader, for the agent's config and the server's "
        "files: PyYAML is in the agent and server extras, not the cli's, so the rmm CLI must not "
        "import it"
    ),
}


def _source_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path, root: Path = ROOT) -> Iterator[str]:
    """Yield every module `path` (under `root`) imports, relative imports resolved."""
    # The package a relative import starts from: the file's folder, for __init__.py too.
    package = list(path.relative_to(root).parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                yield ".".join([*base, *([node.module] if node.module else [])])
            else:
                assert node.module is not None
                yield node.module


def _violations() -> set[tuple[str, str]]:
    """Return every (file, imported module) that crosses a package line."""
    found: set[tuple[str, str]] = set()
    for path in _source_files():
        name = path.relative_to(ROOT).as_posix()
        package = name.split("/", 1)[0]
        for module in _imports(path):
            top = module.split(".", 1)[0]
            if top in FORBIDDEN[package] or (
                package == "rmm_common"
                and top not in COMMON_MAY_IMPORT
                and top not in sys.stdlib_module_names
            ):
                found.add((name, module))
    return found


@pytest.fixture(scope="module")
def violations() -> set[tuple[str, str]]:
    return _violations()


def test_each_package_imports_only_the_shared_packages_and_its_own(
    violations: set[tuple[str, str]],
) -> None:
    unexpected = sorted(
        (path, module)
        for path, module in violations
        if (path.split("/", 1)[0], module) not in ALLOWED
    )
    assert not unexpected, (
        "imports across package lines (see this test's docstring):\n"
        + "\n".join(f"  {path}: {module}" for path, module in unexpected)
    )


def test_every_allowed_exception_still_exists(violations: set[tuple[str, str]]) -> None:
    stale = sorted(set(ALLOWED) - {(path.split("/", 1)[0], module) for path, module in violations})
    assert not stale, "no longer imported: remove from ALLOWED:\n" + "\n".join(
        f"  {path}: {module}" for path, module in stale
    )


def test_the_reader_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    # Parsing is the whole test: check it on a file that hides imports the usual ways.
    package = tmp_path / "rmm_cli" / "sub"
    package.mkdir(parents=True)
    (package / "mod.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..other import thing\n"
        "if TYPE_CHECKING:\n    import rmm_server.app\n"
        "def later() -> None:\n    from rmm_agent import actions\n"
    )
    found = set(_imports(package / "mod.py", tmp_path))
    assert found == {"typing", "rmm_cli.sub", "rmm_cli.other", "rmm_server.app", "rmm_agent"}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _internal_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Return, per module, the modules of its own package it imports (lazy ones included)."""
    files = [path for package in PACKAGES for path in sorted((root / package).rglob("*.py"))]
    modules = {_module_name(path, root) for path in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        name = _module_name(path, root)
        package = list(path.relative_to(root).parts[:-1])
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = (
                    ".".join([*package[: len(package) - node.level + 1], node.module or ""])
                    if node.level
                    else node.module or ""
                ).strip(".")
                # `from package import module` names that module; `from module import name`
                # the module.
                found = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for imported in found:
                target = imported
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] == name.split(".")[0]:
                    targets.add(target)
        graph[name] = targets
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle_inside_any_package() -> None:
    # Lazy and TYPE_CHECKING imports count: a circle hidden inside a function is still two
    # modules that cannot be read, tested or moved apart.
    circles = _circles(_internal_graph())
    assert not circles, "import circles (break each by moving the shared part down):\n" + "\n".join(
        "  " + " <-> ".join(circle) for circle in circles
    )


def test_the_circle_check_finds_a_lazy_circle(tmp_path: Path) -> None:
    package = tmp_path / "rmm_server"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from rmm_server import b\n")
    (package / "b.py").write_text("def later() -> None:\n    from . import a\n")
    (package / "c.py").write_text("import rmm_server.a\n")
    assert _circles(_internal_graph(tmp_path)) == [["rmm_server.a", "rmm_server.b"]]
