"""Read YAML as nodes so that every value keeps its file, line and column."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Where:
    """Collect errors prefixed with a position and a policy/rule context."""

    path: str
    errors: list[str]

    def at(self, node: yaml.Node | None, context: str, reason: str, fix: str = "") -> None:
        """Record one error at `node` ("file:line:col: context: reason (fix)")."""
        if node is not None:
            mark = node.start_mark
            position = f"{self.path}:{mark.line + 1}:{mark.column + 1}"
        else:
            position = self.path
        prefix = f"{position}: {context}: " if context else f"{position}: "
        self.errors.append(prefix + reason + (f" ({fix})" if fix else ""))


def line_of(path: str, node: yaml.Node) -> str:
    """Return "file:line" of `node`."""
    return f"{path}:{node.start_mark.line + 1}"


# libyaml composes about 7 times faster than PyYAML's pure-Python parser (bench/policy_large.py),
# with the same nodes and marks; PyYAML built without it falls back to the Python one.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def compose_documents(path: Path, where: Where) -> list[yaml.Node]:
    """Return the documents of a YAML file as nodes; record a syntax error and return []."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        where.at(None, "", f"cannot read the file: {exc}")
        return []
    try:
        return [doc for doc in yaml.compose_all(text, Loader=_LOADER) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = f"{where.path}:{mark.line + 1}:{mark.column + 1}" if mark else where.path
        where.errors.append(f"{position}: YAML syntax: {exc.problem or exc}")
        return []
    except yaml.YAMLError as exc:
        where.at(None, "", f"YAML syntax: {exc}")
        return []


class Unreadable(Exception):
    """A node YAML cannot turn into a value (a bad explicit tag, an unhashable or recursive key)."""

    def __init__(self, node: yaml.Node, reason: str) -> None:
        super().__init__(reason)
        self.node = node
        self.reason = reason


def scalar(node: yaml.Node) -> Any:
    """Return the Python value of a scalar or a plain sequence/mapping node.

    Raise Unreadable when YAML cannot construct it: `!!int abc`, `!custom x`, `{[1]: 2}`, an
    alias that contains itself.
    """
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        raise Unreadable(node, str(exc.problem or exc)) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise Unreadable(node, f"{type(exc).__name__}: {exc}") from None
    finally:
        loader.dispose()


def mapping(
    node: yaml.Node,
    where: Where,
    context: str,
    allowed: tuple[str, ...],
    required: tuple[str, ...] = (),
) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
    """Return a mapping node's items by key; record unknown, duplicate and missing keys."""
    if not isinstance(node, yaml.MappingNode):
        where.at(node, context, f"expected a mapping, got {_kind(node)}")
        return None
    items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            where.at(key_node, context, "keys must be plain strings")
            continue
        if key in items:
            where.at(key_node, context, f"duplicate key {key!r}", "keep one")
            continue
        if key not in allowed:
            where.at(
                key_node, context, f"unknown key {key!r}", f"allowed keys: {', '.join(allowed)}"
            )
            continue
        items[key] = (key_node, value_node)
    for key in required:
        if key not in items:
            where.at(node, context, f"missing required key {key!r}")
    return items


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{node.value!r}"


def string(node: yaml.Node, where: Where, context: str, what: str) -> str | None:
    """Return a non-empty string scalar, or record an error and return None."""
    if isinstance(node, yaml.ScalarNode):
        value = scalar(node)
        if isinstance(value, str) and value.strip():
            return value
    where.at(node, context, f"{what} must be a non-empty string, got {_kind(node)}")
    return None


def string_list(node: yaml.Node, where: Where, context: str, what: str) -> list[str] | None:
    """Return a list of non-empty strings (a single string counts as a list of one)."""
    if isinstance(node, yaml.ScalarNode):
        one = string(node, where, context, what)
        return None if one is None else [one]
    if not isinstance(node, yaml.SequenceNode):
        where.at(node, context, f"{what} must be a list of strings, got {_kind(node)}")
        return None
    out: list[str] = []
    for item in node.value:
        value = string(item, where, context, f"each entry of {what}")
        if value is None:
            return None
        out.append(value)
    return out


def string_map(node: yaml.Node, where: Where, context: str, what: str) -> dict[str, str] | None:
    """Return a mapping of strings to strings; numbers and booleans must be quoted."""
    if not isinstance(node, yaml.MappingNode):
        where.at(node, context, f"{what} must be a mapping, got {_kind(node)}")
        return None
    out: dict[str, str] = {}
    ok = True
    for key_node, value_node in node.value:
        key = scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
        value = scalar(value_node) if isinstance(value_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            where.at(key_node, context, f"{what}: keys must be strings")
            ok = False
        elif key in out:
            where.at(key_node, context, f"{what}: duplicate key {key!r}", "keep one")
            ok = False
        elif not isinstance(value, str):
            where.at(value_node, context, f"{what}.{key} must be a string", "quote the value")
            ok = False
        else:
            out[key] = value
    return out if ok else None
