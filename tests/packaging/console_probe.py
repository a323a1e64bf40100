"""Run inside a fresh interpreter that cannot import what one extra does not install.

Used by test_console_scripts.py, never imported by it: this file imports nothing but the standard
library before it has installed its import blocker, and click only after. Given (as one JSON
argument) the entry point, the program name, the project root and the top-level module names the
extra does not install:

- mode "walk": walk every command of the entry point's click tree, import every project module
  each command can reach (its module's imports at any depth, those inside functions too, and
  theirs in turn), run `--help` of each command, and print what failed as JSON;
- mode "run": run the entry point with `argv` as the console script would and exit as it does.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import io
import json
import sys
import traceback
from functools import cache
from pathlib import Path
from typing import Any

PROJECT = ("rmm_agent", "rmm_server", "rmm_cli", "rmm_common", "rmm_proto")


class Refuse(importlib.abc.MetaPathFinder):
    """Refuse the modules an install of the extra would not have, as if they were absent."""

    def __init__(self, forbidden: frozenset[str]) -> None:
        self.forbidden = forbidden

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in self.forbidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def block(forbidden: frozenset[str]) -> list[str]:
    """Install the blocker; forget forbidden modules already loaded; return their names."""
    sys.meta_path.insert(0, Refuse(forbidden))
    preloaded = sorted(m for m in sys.modules if m.partition(".")[0] in forbidden)
    for name in preloaded:
        del sys.modules[name]
    return preloaded


def source_of(root: Path, module: str) -> Path | None:
    """Return the file of project module `module` (None when it is not one)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
    return name == "TYPE_CHECKING"


def _catches_import_error(node: ast.Try) -> bool:
    names = set()
    for handler in node.handlers:
        for part in ast.walk(handler.type) if handler.type else ():
            if isinstance(part, ast.Name):
                names.add(part.id)
    return bool(names & {"ImportError", "ModuleNotFoundError"})


class ModuleImports:
    """What a project module imports: on load, only when run, and in which function."""

    def __init__(self) -> None:
        self.eager: set[str] = set()
        self.lazy: set[str] = set()
        self.lazy_in: dict[str | None, set[str]] = {}  # top-level function (None: module) -> ...
        self.functions: set[str] = set()  # top-level functions
        self.names_in: dict[str, set[str]] = {}  # top-level function -> the names it uses
        self.imported_names: dict[str, str] = {}  # name bound by `from X import name` -> X


@cache
def imports_of(root: Path, module: str) -> ModuleImports:
    """Return what `module` imports when loaded, and what it imports only when run.

    An import inside a function, or in a `try` that catches ImportError, is the second kind;
    one under `if TYPE_CHECKING:` is neither.
    """
    found = ModuleImports()
    path = source_of(root, module)
    if path is None:
        return found
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def add(name: str, deferred: bool, function: str | None) -> None:
        if deferred:
            found.lazy.add(name)
            found.lazy_in.setdefault(function, set()).add(name)
        else:
            found.eager.add(name)

    def visit(node: ast.AST, deferred: bool, function: str | None) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child, deferred, function)
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            deferred = True
            if function is None and not isinstance(node, ast.Lambda):
                function = node.name
                found.functions.add(function)
        if isinstance(node, ast.Name) and function is not None:
            found.names_in.setdefault(function, set()).add(node.id)
        if isinstance(node, ast.Try) and _catches_import_error(node):
            for child in node.body:
                visit(child, True, function)
            for other in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(other, deferred, function)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, deferred, function)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            add(base, deferred, function)
            for alias in node.names:
                if source_of(root, f"{base}.{alias.name}") is not None:
                    add(f"{base}.{alias.name}", deferred, function)
                elif not deferred:
                    found.imported_names[alias.asname or alias.name] = base
        for inner in ast.iter_child_nodes(node):
            visit(inner, deferred, function)

    visit(ast.parse(path.read_text(), str(path)), False, None)
    return found


def deferred_imports_of_call(
    root: Path, module: str, function: str, forbidden: frozenset[str]
) -> set[str]:
    """Return the forbidden modules that calling `module.function` may import on the way:
    its own deferred imports and those of the project functions it names, transitively."""
    out: set[str] = set()
    seen: set[tuple[str, str]] = set()
    todo = [(module, function)]
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        current, name = key
        found = imports_of(root, current)
        out |= {m for m in found.lazy_in.get(name, ()) if m.partition(".")[0] in forbidden}
        for used in found.names_in.get(name, ()):
            if used in found.functions:
                todo.append((current, used))
            elif used in found.imported_names:
                source = found.imported_names[used]
                if (
                    source.partition(".")[0] in PROJECT
                    and source.partition(".")[0] not in forbidden
                ):
                    todo.append((source, used))
    return out


def with_parents(module: str) -> list[str]:
    """Return `module` and the packages above it (importing it imports them)."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def reach(
    root: Path, start: str, forbidden: frozenset[str]
) -> tuple[set[str], set[str], set[str], set[str]]:
    """Return what the code of project module `start` can reach: (project modules, other
    modules, forbidden modules its modules import in a guarded `try` on load, forbidden modules
    they import anywhere only when run)."""
    project: set[str] = set()
    others: set[str] = set()
    deferred_forbidden: set[str] = set()
    anywhere: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module in project:
            continue
        project.add(module)
        found = imports_of(root, module)
        eager, lazy = found.eager, found.lazy
        # Guarded imports at module level are reached by loading the module: by any command.
        deferred_forbidden |= {
            m for m in found.lazy_in.get(None, ()) if m.partition(".")[0] in forbidden
        }
        anywhere |= {m for m in lazy if m.partition(".")[0] in forbidden}
        for name in sorted(eager | lazy):
            top = name.partition(".")[0]
            if top in forbidden:
                if name in eager:
                    others.add(name)  # imported on load: importing `module` fails, and says so
            elif top in PROJECT:
                todo.extend(m for m in with_parents(name) if m not in project)
            elif name in eager:
                others.add(name)
    return project, others, deferred_forbidden, anywhere


def walk_commands(command: Any, path: tuple[str, ...], prog: str) -> Any:
    """Yield (path, command) for `command` and every command below it."""
    import click  # noqa: PLC0415 - only once the blocker is in place

    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1] if path else prog)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from walk_commands(sub, (*path, name), prog)


def load_entry(entry: str) -> Any:
    module, _, attribute = entry.partition(":")
    return getattr(importlib.import_module(module), attribute)


def walk(config: dict[str, Any], root: Path, forbidden: frozenset[str]) -> dict[str, Any]:
    """Import and `--help` every command of the entry point; return what failed."""
    from click.testing import CliRunner  # noqa: PLC0415 - only once the blocker is in place

    out: dict[str, Any] = {
        "commands": [],
        "import_failures": {},
        "help_failures": {},
        "needs_other_extra": {},
        "unattributed": [],
        "modules": 0,
    }
    try:
        main = load_entry(config["entry"])
    except Exception:  # reported to the test, which fails on it
        out["import_failures"][config["entry"]] = traceback.format_exc()
        return out
    prog = config["prog"]
    modules: dict[str, str] = {}  # module -> the first command that reaches it
    others: dict[str, str] = {}
    runner = CliRunner()
    deferred_anywhere: set[str] = set()
    attributed: set[str] = set()
    for path, command in walk_commands(main, (), prog):
        shown = " ".join((prog, *path))
        out["commands"].append(shown)
        callback = getattr(command, "callback", None)
        starts = {type(command).__module__, getattr(callback, "__module__", None)}
        for start in sorted(s for s in starts if s and s.partition(".")[0] in PROJECT):
            project, other, deferred, anywhere = reach(root, start, forbidden)
            deferred_anywhere |= anywhere
            for module in project:
                modules.setdefault(module, shown)
            for module in other:
                others.setdefault(module, shown)
            if callback is not None and callback.__module__ == start:
                deferred |= deferred_imports_of_call(root, start, callback.__name__, forbidden)
            if deferred:
                attributed |= deferred
                needs = out["needs_other_extra"].setdefault(shown, [])
                needs.extend(sorted(deferred - set(needs)))
        result = runner.invoke(main, [*path, "--help"], prog_name=prog, catch_exceptions=True)
        if result.exit_code != 0 or "Usage:" not in result.output:
            detail = result.output
            if result.exc_info is not None and not isinstance(result.exception, SystemExit):
                detail += "".join(traceback.format_exception(*result.exc_info))
            out["help_failures"][shown] = detail
    # A module of another extra in `others` is one a reached module imports on load: it fails.
    for module, shown in sorted({**modules, **others}.items()):
        try:
            importlib.import_module(module)
        except Exception as exc:  # reported to the test, which fails on it
            out["import_failures"][module] = f"{shown}: {type(exc).__name__}: {exc}"
    out["modules"] = len(modules)
    out["unattributed"] = sorted(deferred_anywhere - attributed)
    return out


def run(config: dict[str, Any]) -> None:
    """Run the entry point on `argv` as its console script would (SystemExit included)."""
    sys.argv = [config["prog"], *config["argv"]]
    load_entry(config["entry"])(prog_name=config["prog"])


def main() -> None:
    config = json.loads(sys.argv[1])
    root = Path(config["root"])
    forbidden = frozenset(config["forbidden"])
    preloaded = block(forbidden)
    sys.path.insert(0, str(root))
    if config["mode"] == "run":
        run(config)
        return
    out = walk(config, root, forbidden)
    out["preloaded"] = preloaded
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
