"""Read YAML as nodes so that every value keeps its file, line and column: the one strict reader.

Every strict YAML file goes through here: alert policies, the notification config, policy unit
tests, script headers and the agent's configuration. Errors are collected, never raised one by
one, so a reader reports all of them at once, each as "file:line:col: context: reason (fix)".

Two ways to read a mapping: `mapping()` when the allowed keys are known up front (policies, unit
tests, the agent's config), `Section` when readers pull keys one by one and `finish()` reports
the keys nobody asked for (the notification config, whose receivers each read their own keys).

PyYAML is imported at module level here and nowhere else in rmm_common: only the agent and the
server import this module (both extras install PyYAML); the CLI never does, so a `msp-rmm[cli]`
install needs no PyYAML (tests/rmm_common/test_yamlnodes.py checks both).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml

from rmm_common.durations import parse_duration
from rmm_common.errors import InvalidArgument, RmmError

T = TypeVar("T")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_INT_TAG: Final = "tag:yaml.org,2002:int"


@dataclass
class Where:
    """Collect every error of one file, each prefixed with its position and context."""

    path: str
    errors: list[str] = field(default_factory=list)

    def position(self, node: yaml.Node | None) -> str:
        """Return "file:line:col" of `node` (the file alone without a node)."""
        if node is None:
            return self.path
        mark = node.start_mark
        return f"{self.path}:{mark.line + 1}:{mark.column + 1}"

    def at(self, node: yaml.Node | None, context: str, reason: str, fix: str = "") -> None:
        """Record one error at `node` ("file:line:col: context: reason (fix)")."""
        position = self.position(node)
        prefix = f"{position}: {context}: " if context else f"{position}: "
        self.errors.append(prefix + reason + (f" ({fix})" if fix else ""))

    def add(self, node: yaml.Node | None, message: str) -> None:
        """Record one error at `node` whose message already names its context."""
        self.errors.append(f"{self.position(node)}: {message}")

    def raise_errors(self, error: type[RmmError]) -> None:
        """Raise `error` listing every recorded error, one a line; do nothing when there is none."""
        if self.errors:
            raise error("\n".join(self.errors))


def line_of(path: str, node: yaml.Node) -> str:
    """Return "file:line" of `node`."""
    return f"{path}:{node.start_mark.line + 1}"


# libyaml composes about 7 times faster than PyYAML's pure-Python parser (bench/policy_large.py),
# with the same nodes and marks; PyYAML built without it falls back to the Python one.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _syntax_error(where: Where, exc: yaml.YAMLError, label: str) -> None:
    """Record a YAML syntax error at the place the parser points to."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        position = f"{where.path}:{mark.line + 1}:{mark.column + 1}" if mark else where.path
        where.errors.append(f"{position}: {label}: {exc.problem or exc}")
    else:
        where.at(None, "", f"{label}: {exc}")


def compose_documents(path: Path, where: Where) -> list[yaml.Node]:
    """Return the documents of a YAML file as nodes; record a syntax error and return []."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        where.at(None, "", f"cannot read the file: {exc}")
        return []
    try:
        return [doc for doc in yaml.compose_all(text, Loader=_LOADER) if doc is not None]
    except yaml.YAMLError as exc:
        _syntax_error(where, exc, "YAML syntax")
        return []


def compose(text: str, where: Where) -> yaml.Node | None:
    """Return the one document of `text` as a node (None when empty); record a syntax error."""
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        _syntax_error(where, exc, "not valid YAML")
        return None


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


def scalar_text(node: yaml.Node) -> str | None:
    """Return the text of a scalar node, or None for a mapping or sequence."""
    return node.value if isinstance(node, yaml.ScalarNode) else None


class Section:
    """A mapping node read key by key; keys never read are reported as unknown by `finish`."""

    def __init__(
        self,
        where: Where,
        node: yaml.Node | None,
        context: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.where = where
        self.node = node
        self.context = context
        # Only receiver settings expand ${NAME}: secrets belong there, nowhere else.
        self.env = env
        self.entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        self._read: set[str] = set()
        self.valid = True
        if node is None:
            return
        if not isinstance(node, yaml.MappingNode):
            where.add(node, f"{context}: must be a mapping of keys to values")
            self.valid = False
            return
        for key_node, value_node in node.value:
            key = scalar_text(key_node)
            if key is None:
                where.add(key_node, f"{context}: keys must be plain names")
            elif key in self.entries:
                where.add(key_node, f"{context}: key {key!r} is given twice; keep one")
            else:
                self.entries[key] = (key_node, value_node)

    def has(self, key: str) -> bool:
        """Return whether `key` is present."""
        return key in self.entries

    def value_node(self, key: str, *, required: bool = False) -> yaml.Node | None:
        """Return the value node of `key`, marking it as read; report it if required and absent."""
        self._read.add(key)
        entry = self.entries.get(key)
        if entry is None:
            if required and self.valid:
                self.where.add(self.node, f"{self.context}: missing required key {key!r}")
            return None
        return entry[1]

    def child(self, key: str, context: str | None = None, *, required: bool = False) -> Section:
        """Return the nested mapping under `key` as a Section (empty when absent)."""
        node = self.value_node(key, required=required)
        return Section(self.where, node, context or f"{self.context}.{key}", self.env)

    def _scalar(self, key: str, node: yaml.Node) -> str | None:
        text = scalar_text(node)
        if text is None:
            self.where.add(node, f"{self.context}: {key} must be one value, not a list or map")
        return text

    def _expand(self, node: yaml.Node, text: str) -> str:
        if self.env is None:
            return text

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            assert self.env is not None
            if name not in self.env:
                self.where.add(
                    node,
                    f"{self.context}: environment variable {name} is not set;"
                    f" export it to the server or write the value here",
                )
                return ""
            return self.env[name]

        return _ENV_REFERENCE.sub(substitute, text)

    def text(self, key: str, default: str | None = None) -> str:
        """Return a string value; without a default the key is required."""
        node = self.value_node(key, required=default is None)
        if node is None:
            return default or ""
        text = self._scalar(key, node)
        if text is None:
            return default or ""
        if default is None and not text:
            self.where.add(node, f"{self.context}: {key} must not be empty")
        return self._expand(node, text)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        """Return one of `choices`."""
        node = self.value_node(key)
        if node is None:
            return default
        text = self._scalar(key, node)
        if text is not None and text not in choices:
            self.where.add(
                node, f"{self.context}: {key} is {text!r}; use one of {', '.join(choices)}"
            )
            return default
        return text or default

    def flag(self, key: str, default: bool) -> bool:
        """Return a boolean value."""
        node = self.value_node(key)
        if node is None:
            return default
        if node.tag != _BOOL_TAG:
            self.where.add(node, f"{self.context}: {key} must be true or false")
            return default
        return bool(yaml.safe_load(yaml.serialize(node)))

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        """Return a whole number of at least `minimum`."""
        node = self.value_node(key)
        if node is None:
            return default
        if node.tag != _INT_TAG:
            self.where.add(node, f"{self.context}: {key} must be a whole number")
            return default
        value = int(yaml.safe_load(yaml.serialize(node)))
        if value < minimum:
            self.where.add(node, f"{self.context}: {key} must be at least {minimum}")
            return default
        return value

    def seconds(self, key: str, default: float, minimum: float = 0.0) -> float:
        """Return a duration ("30s", "5m", "4h") in seconds, at least `minimum`."""
        node = self.value_node(key)
        if node is None:
            return default
        text = self._scalar(key, node)
        if text is None:
            return default
        try:
            value = parse_duration(text)
        except InvalidArgument as exc:
            self.where.add(node, f"{self.context}: {key}: {exc}")
            return default
        if value < minimum:
            self.where.add(node, f"{self.context}: {key} must be at least {minimum:g}s")
            return default
        return value

    def texts(self, key: str, *, required: bool = False) -> list[str]:
        """Return a list of strings (a single string counts as a list of one)."""
        node = self.value_node(key, required=required)
        if node is None:
            return []
        if isinstance(node, yaml.ScalarNode):
            return [self._expand(node, node.value)]
        if not isinstance(node, yaml.SequenceNode):
            self.where.add(node, f"{self.context}: {key} must be a list of strings")
            return []
        values: list[str] = []
        for item in node.value:
            text = scalar_text(item)
            if text is None:
                self.where.add(item, f"{self.context}: {key}: each item must be a string")
            else:
                values.append(self._expand(item, text))
        if required and not values:
            self.where.add(node, f"{self.context}: {key} must not be empty")
        return values

    def text_map(self, key: str) -> dict[str, str]:
        """Return a mapping of strings to strings."""
        inner = self.child(key)
        result: dict[str, str] = {}
        for name in list(inner.entries):
            result[name] = inner.text(name, "")
        return result

    def items(self, key: str) -> list[tuple[yaml.Node, int]]:
        """Return the item nodes of the list under `key` with their positions."""
        node = self.value_node(key)
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.where.add(node, f"{self.context}: {key} must be a list")
            return []
        return [(item, index) for index, item in enumerate(node.value)]

    def check(self, node: yaml.Node | None, convert: Callable[[], T], fallback: T) -> T:
        """Run `convert`, turning InvalidArgument into an error at `node`."""
        try:
            return convert()
        except InvalidArgument as exc:
            self.where.add(node or self.node, f"{self.context}: {exc}")
            return fallback

    def finish(self) -> None:
        """Report every key that no reader asked for, with the closest known key as a hint."""
        known = sorted(self._read)
        for key, (key_node, _) in self.entries.items():
            if key in self._read:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.where.add(
                key_node,
                f"{self.context}: unknown key {key!r}{hint} (known keys: {', '.join(known)})",
            )


def process_env() -> Mapping[str, str]:
    """Return the process environment (the default source for ${NAME} references)."""
    return os.environ
