"""Library script parameters: declared in a script's header, checked by type on every run.

A parameter is the only input an operator below the ad-hoc script role may give a library
script. Each value is checked against its declaration on the server, and reaches the script as
the environment variable RMM_PARAM_<NAME> (never as a name the operator picks), so that what
may be set is exactly what the header says. docs/scripts.md describes the keys.
"""

from __future__ import annotations

import difflib
import ntpath
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml

from rmm_common.errors import InvalidArgument
from rmm_common.script_env import PARAM_PREFIX
from rmm_common.yamlnodes import Unreadable, scalar

TYPES = ("string", "int", "bool", "choice", "path")
KEYS = (
    "name",
    "type",
    "description",
    "required",
    "default",
    "choices",
    "pattern",
    "min",
    "max",
    "roots",
)
# Lower case so the variable (upper case) and the name never differ but in case; short enough
# to type on a command line.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_PARAMS = 32
# An environment variable's value: a few KiB is plenty for a name, a path or a number.
MAX_VALUE_CHARS = 4096
MAX_PATTERN_CHARS = 500
TRUE = ("true", "yes", "on", "1")
FALSE = ("false", "no", "off", "0")
INT = re.compile(r"^[+-]?[0-9]{1,18}$")
# An absolute path on POSIX (/var/log) or Windows (C:\Temp, C:/Temp).
ABSOLUTE = re.compile(r"^(/|[A-Za-z]:[\\/])")
WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")
MAX_ROOTS = 32


def normalised_path(value: str) -> str:
    """Return an absolute path (no `..` parts: checked before) in one spelling: `//`, `/./` and
    a trailing separator gone (`/var//log/./` is `/var/log`), and on Windows `\\` separators
    and an upper-case drive (`c:/Temp/` is `C:\\Temp`)."""
    if WINDOWS_ABSOLUTE.match(value):
        norm = ntpath.normpath(value)
        return norm[0].upper() + norm[1:]
    # POSIX keeps a leading `//` as implementation-defined; no root is spelled so.
    return "/" + posixpath.normpath(value).lstrip("/")


def path_is_under(path: str, root: str) -> bool:
    """Say whether normalised `path` is `root` or inside it, by whole path components (so
    `/variable` is not under `/var`); Windows paths without regard to case."""
    windows = WINDOWS_ABSOLUTE.match(root) is not None
    if windows != (WINDOWS_ABSOLUTE.match(path) is not None):
        return False
    sep = "\\" if windows else "/"
    if windows:
        path, root = path.casefold(), root.casefold()
    return path == root or path.startswith(root if root.endswith(sep) else root + sep)


@dataclass(frozen=True, slots=True)
class Param:
    """One declared parameter of a library script."""

    name: str
    type: str
    description: str = ""
    required: bool = False
    default: str | None = None  # already checked and normalised
    choices: tuple[str, ...] = ()
    pattern: str = ""
    minimum: int | None = None
    maximum: int | None = None
    roots: tuple[str, ...] = ()  # type path: the value must be one of these or inside one

    @property
    def env_name(self) -> str:
        """The variable the script reads the value from."""
        return PARAM_PREFIX + self.name.upper()

    def allowed(self) -> str:
        """Say what values this parameter takes, for messages and `rmm scripts show`."""
        if self.type == "choice":
            return "one of " + ", ".join(self.choices)
        if self.type == "bool":
            return "true or false"
        if self.type == "int":
            low = "" if self.minimum is None else f" from {self.minimum}"
            high = "" if self.maximum is None else f" to {self.maximum}"
            return f"a whole number{low}{high}"
        what = "an absolute path (no .. parts)" if self.type == "path" else "one line of text"
        if self.roots:
            what += " under " + ", ".join(self.roots)
        if self.pattern:
            what += f" matching the pattern {self.pattern!r}"
        return what

    def check(self, value: str) -> str:
        """Return `value` normalised (e.g. bools as true/false); raise ValueError saying why not."""
        if len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"is {len(value)} characters long, more than {MAX_VALUE_CHARS}")
        if not value.isprintable():
            # Newlines, tabs, NUL and terminal escapes: a parameter is one printable line.
            raise ValueError("holds a control character (newline, tab, escape...)")
        if self.type == "int":
            if not INT.match(value.strip()):
                raise ValueError("is not a whole number")
            number = int(value.strip())
            if (self.minimum is not None and number < self.minimum) or (
                self.maximum is not None and number > self.maximum
            ):
                raise ValueError("is out of range")
            return str(number)
        if self.type == "bool":
            lowered = value.strip().lower()
            if lowered in TRUE:
                return "true"
            if lowered in FALSE:
                return "false"
            raise ValueError("is not true or false")
        if self.type == "choice":
            if value not in self.choices:
                raise ValueError("is not one of the choices")
            return value
        if self.type == "path":
            value = self._checked_path(value)
        if self.pattern and re.fullmatch(self.pattern, value) is None:
            raise ValueError("does not match the pattern")
        return value

    def _checked_path(self, value: str) -> str:
        """Return a path parameter's value normalised; raise ValueError when it is not absolute,
        has a `..` part, or lies outside the declared roots."""
        if not ABSOLUTE.match(value):
            raise ValueError("is not an absolute path")
        if ".." in re.split(r"[\\/]", value):
            raise ValueError("has a .. part")
        # The agent gets the path in one spelling, the one checked here.
        value = normalised_path(value)
        if self.roots and not any(path_is_under(value, root) for root in self.roots):
            raise ValueError(f"is outside the directories the script allows ({value})")
        return value


def check_params(
    script: str, params: tuple[Param, ...], given: Mapping[str, str], flag: str = "--param "
) -> dict[str, str]:
    """Return the environment a run with `given` parameters gets: RMM_PARAM_<NAME> -> value.

    Defaults fill what was not given. Raise InvalidArgument listing every problem: the
    parameter, what is wrong, and what it takes. `flag` is how the caller gave a parameter
    ("--param " on a command line, "params." in a patch policy).
    """
    by_name = {param.name: param for param in params}
    problems: list[str] = []
    for name in given:
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            declared = ", ".join(by_name) if by_name else "none"
            problems.append(
                f"{flag}{_shown(name)}: the script declares no such parameter; {hint}"
                f"its parameters: {declared} (see `rmm scripts show {script}`)"
            )
    env: dict[str, str] = {}
    for param in params:
        if param.name not in given:
            if param.required:
                problems.append(
                    f"{flag}{param.name} is required: give {flag}{param.name}=VALUE, "
                    f"{param.allowed()}"
                )
            elif param.default is not None:
                env[param.env_name] = param.default
            continue
        value = given[param.name]
        try:
            env[param.env_name] = param.check(value)
        except ValueError as exc:
            problems.append(
                f"{flag}{param.name}={_shown(value)} {exc}; {param.name} takes {param.allowed()}"
            )
    if problems:
        raise InvalidArgument(f"library script {script!r}: " + "; ".join(problems))
    return env


def _shown(text: str) -> str:
    """`text` as typed when it is plain, else quoted with escapes; bounded."""
    shown = text if text.isprintable() and text.strip() == text and text else repr(text)
    return shown if len(shown) <= 80 else shown[:79] + "…"


# --- reading a header's `params:` ----------------------------------------------------------

LineOf = Callable[[yaml.Node], int]


def parse_params(
    node: yaml.Node, line_of: LineOf, where: str, errors: list[str]
) -> tuple[Param, ...]:
    """Return the parameters a header's `params:` node declares; record each problem.

    `where` is the file's path; each problem is `file:line: problem; fix`.
    """
    before = len(errors)

    def problem(at: yaml.Node, text: str) -> None:
        errors.append(f"{where}:{line_of(at)}: {text}")

    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return ()
    if not isinstance(node, yaml.SequenceNode):
        problem(node, "params must be a list of parameters; write `params:` then `- name: ...`")
        return ()
    if len(node.value) > MAX_PARAMS:
        problem(node, f"{len(node.value)} params, more than {MAX_PARAMS}; declare fewer")
        return ()
    params: list[Param] = []
    seen: dict[str, int] = {}
    for item in node.value:
        param = _parse_param(item, problem)
        if param is None:
            continue
        if param.name in seen:
            problem(
                item,
                f"param {param.name!r} is declared twice (first on line {seen[param.name]}); "
                "keep one",
            )
            continue
        seen[param.name] = line_of(item)
        params.append(param)
    return tuple(params) if len(errors) == before else ()


Problem = Callable[[yaml.Node, str], None]


def _parse_param(node: yaml.Node, problem: Problem) -> Param | None:
    if not isinstance(node, yaml.MappingNode):
        problem(node, "each param is a mapping; write `- name: path` then `type: path` under it")
        return None
    items, bad = _read_items(node, problem)
    name_value = items.get("name", (node, None))[1]
    label = f"param {name_value!r}" if isinstance(name_value, str) else "a param"
    name = _checked_name(node, items, problem)
    if name is None:
        return None
    kind = items.get("type", (node, "string"))[1]
    if kind not in TYPES:
        problem(items["type"][0], f"{label}: unknown type {kind!r}; use {', '.join(TYPES)}")
        return None
    decl = _Decl(node, items, label, str(kind), problem, bad)
    description = decl.get("description", "")
    if not isinstance(description, str):
        decl.refuse("description", "description must be text")
    required = decl.get("required", False)
    if not isinstance(required, bool):
        decl.refuse("required", "required must be true or false")
    _check_keys_fit_type(decl)
    choices = _parse_choices(decl)
    pattern = _parse_pattern(decl)
    low, high = _parse_bounds(decl)
    roots = _parse_roots(decl)
    if decl.bad:
        return None
    param = Param(
        name=name,
        type=decl.kind,
        description=str(description).strip(),
        required=bool(required),
        choices=choices,
        pattern=str(pattern),
        minimum=low,
        maximum=high,
        roots=roots,
    )
    if "default" not in items:
        return param
    return _with_default(decl, param)


@dataclass
class _Decl:
    """One param's items as read (key -> (key node, value)), its label and its type."""

    node: yaml.Node
    items: dict[str, tuple[yaml.Node, Any]]
    label: str
    kind: str
    problem: Problem
    bad: bool = False

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of `key`, or `default` when it is not given."""
        return self.items[key][1] if key in self.items else default

    def at(self, key: str) -> yaml.Node:
        """Return the node a problem with `key` is reported at."""
        return self.items[key][0] if key in self.items else self.node

    def refuse(self, key: str, text: str) -> None:
        """Record a problem with `key` and mark the param wrong."""
        self.problem(self.at(key), f"{self.label}: {text}")
        self.bad = True


def _read_items(
    node: yaml.MappingNode, problem: Problem
) -> tuple[dict[str, tuple[yaml.Node, Any]], bool]:
    """Return a param's known keys (key -> (key node, value)) and whether any key was wrong."""
    items: dict[str, tuple[yaml.Node, Any]] = {}
    bad = False
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problem(key_node, f"unknown param key {key!r}; {hint}the keys are {', '.join(KEYS)}")
            bad = True
            continue
        if key in items:
            problem(key_node, f"param key {key!r} is given twice; keep one")
            bad = True
            continue
        try:
            items[key] = (key_node, scalar(value_node))
        except Unreadable as exc:
            problem(key_node, f"param {key}: {exc.reason}; write a plain value")
            bad = True
    return items, bad


def _checked_name(
    node: yaml.Node, items: dict[str, tuple[yaml.Node, Any]], problem: Problem
) -> str | None:
    """Return the param's name, or None when it is missing or not a valid name."""
    if "name" not in items:
        problem(node, "a param has no name; add `name: lowercase_name`")
        return None
    name_value = items["name"][1]
    if not isinstance(name_value, str) or not NAME.match(name_value):
        suggestion = re.sub(r"[^a-z0-9_]+", "_", str(name_value).lower()).strip("_") or "value"
        if not suggestion[0].isalpha():
            suggestion = "p_" + suggestion
        problem(
            items["name"][0],
            f"param name {name_value!r} is not a lowercase letter then up to 31 lowercase "
            f"letters, digits or _; write e.g. `name: {suggestion[:32]}`",
        )
        return None
    return name_value


def _check_keys_fit_type(decl: _Decl) -> None:
    """Refuse choices, pattern, min and max on a type they do not apply to."""
    for key, only in (
        ("choices", ("choice",)),
        ("pattern", ("string", "path")),
        ("roots", ("path",)),
    ):
        if key in decl.items and decl.kind not in only:
            decl.refuse(key, f"{key} is for type {' or '.join(only)}, not {decl.kind}")
    for key in ("min", "max"):
        if key in decl.items and decl.kind != "int":
            decl.refuse(key, f"{key} is for type int, not {decl.kind}")


def _parse_choices(decl: _Decl) -> tuple[str, ...]:
    """Return a choice param's choices (empty for other types)."""
    if decl.kind != "choice":
        return ()
    value = decl.get("choices")
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(c, str) and c and c.isprintable() for c in value)
    ):
        decl.refuse("choices", "type choice needs `choices: [one, two]` (text)")
        return ()
    if len(set(value)) != len(value):
        decl.refuse("choices", "a choice is listed twice; list each once")
        return ()
    return tuple(value)


def _parse_pattern(decl: _Decl) -> Any:
    """Return the param's pattern as given ("" when none); refuse one that does not compile."""
    pattern = decl.get("pattern", "")
    if "pattern" not in decl.items:
        return pattern
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
        decl.refuse("pattern", "pattern must be a regular expression (text)")
        return pattern
    try:
        re.compile(pattern)
    except re.error as exc:
        decl.refuse("pattern", f"pattern is not a regular expression: {exc}")
    return pattern


def _parse_roots(decl: _Decl) -> tuple[str, ...]:
    """Return a path param's allowed roots, normalised (empty: any absolute path)."""
    if decl.kind != "path" or "roots" not in decl.items:
        return ()
    value = decl.get("roots")
    fix = "write `roots: [/var, /home]`: absolute directories the value must be in"
    if not isinstance(value, list) or not value or len(value) > MAX_ROOTS:
        decl.refuse("roots", f"roots must be a list of 1 to {MAX_ROOTS} directories; {fix}")
        return ()
    roots: list[str] = []
    for root in value:
        if (
            not isinstance(root, str)
            or not root.isprintable()
            or not ABSOLUTE.match(root)
            or ".." in re.split(r"[\\/]", root)
        ):
            decl.refuse("roots", f"root {root!r} is not an absolute path without .. parts; {fix}")
            return ()
        roots.append(normalised_path(root))
    return tuple(dict.fromkeys(roots))


def _parse_bounds(decl: _Decl) -> tuple[int | None, int | None]:
    """Return an int param's (min, max), None where not given or wrong."""
    bounds: dict[str, int | None] = {"min": None, "max": None}
    for key in ("min", "max"):
        value = decl.get(key)
        if key in decl.items and decl.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                decl.refuse(key, f"{key} must be a whole number")
            else:
                bounds[key] = value
    low, high = bounds["min"], bounds["max"]
    if low is not None and high is not None and low > high:
        decl.refuse("min", f"min {low} is more than max {high}")
    return low, high


def _with_default(decl: _Decl, param: Param) -> Param | None:
    """Return `param` with its default checked and normalised; None when the default is wrong."""
    label, problem = decl.label, decl.problem
    if param.required:
        problem(decl.at("default"), f"{label}: a required param has no default; drop one of them")
        return None
    raw = decl.get("default")
    if isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, (str, int, float)):
        text = str(raw)
    else:
        problem(decl.at("default"), f"{label}: default must be a single value")
        return None
    try:
        default = param.check(text)
    except ValueError as exc:
        problem(
            decl.at("default"),
            f"{label}: default {text!r} {exc}; it must be {param.allowed()}",
        )
        return None
    return replace(param, required=False, default=default)
