"""Strict reading of YAML nodes: unknown keys, wrong types and bad values become located issues."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

import yaml

from rmm_common.durations import parse_duration
from rmm_common.errors import InvalidArgument

T = TypeVar("T")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_INT_TAG: Final = "tag:yaml.org,2002:int"


class Issues:
    """Every problem found in one file, each prefixed with file:line:col."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def where(self, node: yaml.Node | None) -> str:
        """Return "file:line:col" for `node` (or the file alone)."""
        if node is None:
            return self.source
        return f"{self.source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    def add(self, node: yaml.Node | None, message: str) -> None:
        """Record one problem found at `node`."""
        self.items.append(f"{self.where(node)}: {message}")


def scalar_text(node: yaml.Node) -> str | None:
    """Return the text of a scalar node, or None for a mapping or sequence."""
    return node.value if isinstance(node, yaml.ScalarNode) else None


class Section:
    """A mapping node read key by key; keys never read are reported as unknown by `finish`."""

    def __init__(
        self,
        issues: Issues,
        node: yaml.Node | None,
        context: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.issues = issues
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
            issues.add(node, f"{context}: must be a mapping of keys to values")
            self.valid = False
            return
        for key_node, value_node in node.value:
            key = scalar_text(key_node)
            if key is None:
                issues.add(key_node, f"{context}: keys must be plain names")
            elif key in self.entries:
                issues.add(key_node, f"{context}: key {key!r} is given twice; keep one")
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
                self.issues.add(self.node, f"{self.context}: missing required key {key!r}")
            return None
        return entry[1]

    def child(self, key: str, context: str | None = None, *, required: bool = False) -> Section:
        """Return the nested mapping under `key` as a Section (empty when absent)."""
        node = self.value_node(key, required=required)
        return Section(self.issues, node, context or f"{self.context}.{key}", self.env)

    def _scalar(self, key: str, node: yaml.Node) -> str | None:
        text = scalar_text(node)
        if text is None:
            self.issues.add(node, f"{self.context}: {key} must be one value, not a list or map")
        return text

    def _expand(self, node: yaml.Node, text: str) -> str:
        if self.env is None:
            return text

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            assert self.env is not None
            if name not in self.env:
                self.issues.add(
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
            self.issues.add(node, f"{self.context}: {key} must not be empty")
        return self._expand(node, text)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        """Return one of `choices`."""
        node = self.value_node(key)
        if node is None:
            return default
        text = self._scalar(key, node)
        if text is not None and text not in choices:
            self.issues.add(
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
            self.issues.add(node, f"{self.context}: {key} must be true or false")
            return default
        return bool(yaml.safe_load(yaml.serialize(node)))

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        """Return a whole number of at least `minimum`."""
        node = self.value_node(key)
        if node is None:
            return default
        if node.tag != _INT_TAG:
            self.issues.add(node, f"{self.context}: {key} must be a whole number")
            return default
        value = int(yaml.safe_load(yaml.serialize(node)))
        if value < minimum:
            self.issues.add(node, f"{self.context}: {key} must be at least {minimum}")
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
            self.issues.add(node, f"{self.context}: {key}: {exc}")
            return default
        if value < minimum:
            self.issues.add(node, f"{self.context}: {key} must be at least {minimum:g}s")
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
            self.issues.add(node, f"{self.context}: {key} must be a list of strings")
            return []
        values: list[str] = []
        for item in node.value:
            text = scalar_text(item)
            if text is None:
                self.issues.add(item, f"{self.context}: {key}: each item must be a string")
            else:
                values.append(self._expand(item, text))
        if required and not values:
            self.issues.add(node, f"{self.context}: {key} must not be empty")
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
            self.issues.add(node, f"{self.context}: {key} must be a list")
            return []
        return [(item, index) for index, item in enumerate(node.value)]

    def check(self, node: yaml.Node | None, convert: Callable[[], T], fallback: T) -> T:
        """Run `convert`, turning InvalidArgument into an issue at `node`."""
        try:
            return convert()
        except InvalidArgument as exc:
            self.issues.add(node or self.node, f"{self.context}: {exc}")
            return fallback

    def finish(self) -> None:
        """Report every key that no reader asked for, with the closest known key as a hint."""
        known = sorted(self._read)
        for key, (key_node, _) in self.entries.items():
            if key in self._read:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.issues.add(
                key_node,
                f"{self.context}: unknown key {key!r}{hint} (known keys: {', '.join(known)})",
            )


def load_root(text: str, issues: Issues) -> yaml.Node | None:
    """Compose `text` into a node tree; a syntax error becomes an issue and None."""
    try:
        return yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{issues.source}:{mark.line + 1}:{mark.column + 1}" if mark else issues.source
        issues.items.append(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}")
        return None


def process_env() -> Mapping[str, str]:
    """Return the process environment (the default source for ${NAME} references)."""
    return os.environ
