"""The script library: a folder of scripts, each with a short YAML header, checked at load.

A script starts (after an optional shebang line) with a block of `#` comment lines fenced by
`# ---` lines that hold YAML; docs/scripts.md describes the keys. A library with any problem is
refused whole, with every problem listed as `file:line: problem; fix`.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rmm_common.durations import parse_duration
from rmm_common.errors import ConfigError, InvalidArgument, NotFound
from rmm_common.yamlnodes import Unreadable, scalar
from rmm_server.roles import Role
from rmm_server.script_params import Param, check_params, parse_params

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
SHELLS = ("bash", "sh", "python", "powershell")
# The shells each extension may declare first; the extension says what the file is to editors,
# linters and people, so it must not contradict the interpreter the agent will use.
EXTENSION_SHELLS: dict[str, tuple[str, ...]] = {
    ".sh": ("sh", "bash"),
    ".bash": ("bash",),
    ".py": ("python",),
    ".ps1": ("powershell",),
}
SHELL_EXTENSION = {"bash": ".sh", "sh": ".sh", "python": ".py", "powershell": ".ps1"}
KEYS = ("name", "description", "shells", "timeout", "min_role", "args", "params")
DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_TIMEOUT = "24h"
MAX_TIMEOUT_SECONDS = parse_duration(MAX_TIMEOUT)
# Every run ships the body to an agent inside a signed command: keep it far below gRPC's limit.
MAX_SCRIPT_BYTES = 1024 * 1024
FENCE = re.compile(r"^#\s*---\s*$")
# How far down a misplaced header is still recognised as one, to say "move it up".
HEADER_SEARCH_LINES = 30


@dataclass(frozen=True, slots=True)
class Script:
    """One library script: its header's fields and the whole file as `body`."""

    name: str
    description: str
    shells: tuple[str, ...]
    timeout_seconds: float
    min_role: Role
    args: str
    path: Path
    line: int  # where the header starts
    body: str
    params: tuple[Param, ...] = ()

    @property
    def shell(self) -> str:
        """The interpreter the agent runs the script with."""
        return self.shells[0]

    @property
    def where(self) -> str:
        """`file:line` of the header, for messages."""
        return f"{self.path}:{self.line}"


class ScriptLibraryError(ConfigError):
    """A script library with problems; `errors` lists each as `file:line: problem; fix`."""

    def __init__(self, directory: Path, errors: list[str]) -> None:
        super().__init__(
            f"script library {directory} refused, {len(errors)} problem(s):\n" + "\n".join(errors)
        )
        self.errors = list(errors)


class ScriptLibrary:
    """The scripts operators may run by name; `reload()` swaps in a new set only if it is clean."""

    def __init__(self, scripts: Iterable[Script] = (), directory: Path | None = None) -> None:
        self.directory = directory
        # Replaced whole, never mutated, so readers on other threads see one set or the other.
        self._scripts: dict[str, Script] = {s.name: s for s in sorted(scripts, key=_by_name)}

    @classmethod
    def load(cls, directory: Path) -> ScriptLibrary:
        """Load every script in `directory` (not its sub-folders); raise on any problem."""
        if not directory.is_dir():
            raise ConfigError(
                f"script library {directory} is not a directory: create it or pass "
                "--script-library DIR"
            )
        errors: list[str] = []
        found: dict[str, Script] = {}
        for path in sorted(directory.iterdir()):
            if _ignored(path):
                log.debug("script library: %s is not a script file, skipped", path)
                continue
            script = parse_script(path, errors)
            if script is None:
                continue
            first = found.get(script.name)
            if first is not None:
                errors.append(
                    f"{script.where}: script name {script.name!r} is taken by {first.where}; "
                    "give one of them another `name:` (names are unique in the library)"
                )
                continue
            found[script.name] = script
        if errors:
            raise ScriptLibraryError(directory, errors)
        log.info("script library: %d scripts from %s", len(found), directory)
        return cls(found.values(), directory)

    def reload(self) -> list[str]:
        """Load the directory again and take the new scripts if they are clean.

        A broken library is refused and logged, and the scripts in force stay; returns its
        problems (empty when the new library is in force).
        """
        if self.directory is None:
            return []
        try:
            fresh = ScriptLibrary.load(self.directory)
        except ScriptLibraryError as exc:
            log.error("%s\nthe previous script library (%d scripts) stays", exc, len(self))
            return exc.errors
        except ConfigError as exc:
            log.error("%s; the previous script library (%d scripts) stays", exc, len(self))
            return [str(exc)]
        self._scripts = fresh._scripts
        return []

    def get(self, name: str) -> Script:
        """Return the script called `name`, or raise NotFound naming the known ones."""
        scripts = self._scripts
        script = scripts.get(name)
        if script is not None:
            return script
        if not scripts:
            raise NotFound(
                f"no script {name!r}: the script library is empty (the server's "
                "--script-library folder holds no scripts)"
            )
        close = difflib.get_close_matches(name, list(scripts), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise NotFound(
            f"no script {name!r} in the library{hint} (known: {', '.join(scripts)}; "
            "see `rmm scripts list`)"
        )

    def names(self) -> list[str]:
        """Return the scripts' names, sorted."""
        return list(self._scripts)

    def unknown_scripts(self, names: Iterable[str]) -> list[str]:
        """Return those of `names` that name no script (by name or file name), once each.

        For checking references such as a policy rule's `remediate.script`.
        """
        scripts = self._scripts
        known = set(scripts) | {script.path.name for script in scripts.values()}
        unknown: list[str] = []
        for name in names:
            if name not in known and name not in unknown:
                unknown.append(name)
        return unknown

    def params_problem(self, name: str, given: Mapping[str, str], flag: str) -> str | None:
        """Return why `given` does not fit the parameters the script `name` declares, or None
        when they fit (or there is no such script: `unknown_scripts` names that)."""
        scripts = self._scripts
        script = scripts.get(name) or next(
            (s for s in scripts.values() if s.path.name == name), None
        )
        if script is None:
            return None
        try:
            check_params(script.name, script.params, given, flag)
        except InvalidArgument as exc:
            return str(exc)
        return None

    def __iter__(self) -> Iterator[Script]:
        return iter(self._scripts.values())

    def __len__(self) -> int:
        return len(self._scripts)

    def __contains__(self, name: object) -> bool:
        return name in self._scripts


def _by_name(script: Script) -> str:
    return script.name


def _ignored(path: Path) -> bool:
    """Sub-folders, hidden files and editor leftovers are never scripts."""
    name = path.name
    return (
        not path.is_file()
        or name.startswith((".", "#"))
        or name.endswith(("~", ".swp", ".bak", ".orig"))
    )


def _script_like(path: Path, raw: bytes) -> bool:
    return path.suffix in EXTENSION_SHELLS or raw.startswith(b"#!")


def parse_script(path: Path, errors: list[str]) -> Script | None:
    """Return the script in `path`; None (with problems added to `errors`) if it has none.

    A file that is not script-like (no script extension, no shebang, no header) is skipped.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        errors.append(f"{path}:1: cannot read the file: {exc}; check its permissions")
        return None
    script_like = _script_like(path, raw)
    try:
        text = raw.decode("utf-8-sig")  # PowerShell editors like to write a byte-order mark
    except UnicodeDecodeError as exc:
        if script_like:
            errors.append(f"{path}:1: not UTF-8 text ({exc.reason}); save the file as UTF-8")
        else:
            log.debug("script library: %s is not text, skipped", path)
        return None
    lines = text.splitlines()
    start = 1 if lines and lines[0].startswith("#!") else 0
    if start >= len(lines) or not FENCE.match(lines[start]):
        if script_like:
            errors.append(_missing_header(path, lines, start))
        else:
            log.debug("script library: %s has no header and is not a script, skipped", path)
        return None
    if len(raw) > MAX_SCRIPT_BYTES:
        errors.append(
            f"{path}:1: the file is {len(raw)} bytes, more than the {MAX_SCRIPT_BYTES} a library "
            "script may have; make it smaller (ship large tools another way and call them)"
        )
        return None
    header = _header_lines(path, lines, start, errors)
    if header is None:
        return None
    before = len(errors)
    fields = _header_fields(path, header, start + 2, errors)
    if fields is None:
        return None
    # The known keys' values are checked even after an unknown key, to list every problem.
    script = _build(path, fields, start + 1, text, errors)
    return script if len(errors) == before else None


def _missing_header(path: Path, lines: list[str], start: int) -> str:
    for index in range(start, min(len(lines), start + HEADER_SEARCH_LINES)):
        if FENCE.match(lines[index]):
            where = "line 2, right after the shebang" if start else "line 1"
            return (
                f"{path}:{index + 1}: the header must start on {where}; move the `# ---` block "
                "up (nothing may come before it)"
            )
    kind = f"a {path.suffix} script" if path.suffix in EXTENSION_SHELLS else "a script (shebang)"
    return (
        f"{path}:{start + 1}: {kind} without a header; start it"
        f"{' after the shebang' if start else ''} with `# ---`, `# description: ...`, "
        "`# shells: [...]`, `# ---` (see docs/scripts.md), or move the file out of the library"
    )


def _header_lines(path: Path, lines: list[str], start: int, errors: list[str]) -> list[str] | None:
    """Return the header's YAML lines without their `#`, or None after recording a problem."""
    content: list[str] = []
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if FENCE.match(line):
            return content
        if not line.startswith("#"):
            errors.append(
                f"{path}:{index + 1}: header line is not a comment; start it with `# ` or close "
                f"the header opened on line {start + 1} with a `# ---` line"
            )
            return None
        text = line[1:]
        content.append(text[1:] if text.startswith(" ") else text)
    errors.append(
        f"{path}:{start + 1}: the header opened here is never closed; end it with a `# ---` line"
    )
    return None


# Each header key's (file line, value, value's node); the node keeps positions for `params`.
Fields = dict[str, tuple[int, Any, yaml.Node]]


def _header_fields(
    path: Path, header: list[str], first_line: int, errors: list[str]
) -> Fields | None:
    """Return each known header key's (file line, value), recording unknown and repeated keys.

    None (with the problem recorded) when the header is not YAML key: value lines at all.
    """

    def line_of(node: yaml.Node | yaml.Mark) -> int:
        mark = node.start_mark if isinstance(node, yaml.Node) else node
        return first_line + mark.line

    try:
        root = yaml.compose("\n".join(header), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = line_of(mark) if mark is not None else first_line - 1
        errors.append(
            f"{path}:{line}: the header is not valid YAML: {exc.problem or exc}; fix the YAML "
            '(quote values that hold ": " or " #")'
        )
        return None
    except yaml.YAMLError as exc:
        errors.append(f"{path}:{first_line - 1}: the header is not valid YAML: {exc}; fix the YAML")
        return None
    if not isinstance(root, yaml.MappingNode):
        if root is None:
            got = "nothing"
        else:
            got = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        errors.append(
            f"{path}:{first_line - 1}: the header must be `key: value` lines, not {got}; write "
            "at least `# description: ...` and `# shells: [...]`"
        )
        return None
    fields: Fields = {}
    for key_node, value_node in root.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        line = line_of(key_node)
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            errors.append(
                f"{path}:{line}: unknown header key {key!r}; {hint}the keys are {', '.join(KEYS)}"
            )
            continue
        if key in fields:
            errors.append(
                f"{path}:{line}: {key!r} is given twice (first on line {fields[key][0]}); keep one"
            )
            continue
        try:
            fields[key] = (line, scalar(value_node), value_node)
        except Unreadable as exc:
            errors.append(f"{path}:{line}: {key}: {exc.reason}; write a plain value")
    return fields


def _build(
    path: Path, fields: Fields, header_line: int, body: str, errors: list[str]
) -> Script | None:
    """Check the header's values and return the script, or record every problem and None."""
    problems = len(errors)

    def problem(key: str, text: str) -> None:
        line = fields[key][0] if key in fields else header_line
        errors.append(f"{path}:{line}: {text}")

    name = fields.get("name", (header_line, path.stem))[1]
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        suggestion = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-") or "my-script"
        if "name" in fields:
            problem(
                "name",
                f"name {name!r} is not lowercase letters, digits and dashes; "
                f"write e.g. `name: {suggestion}`",
            )
        else:
            problem(
                "name",
                f"the file name makes the script name {name!r}, which is not lowercase letters, "
                f"digits and dashes; add `name: {suggestion}` to the header or rename the file",
            )

    description = fields.get("description", (header_line, None))[1]
    if "description" not in fields:
        problem("description", "the header has no description; add `description: what it does`")
    elif not isinstance(description, str) or not description.strip():
        problem("description", "description must be text; write `description: what it does`")

    shells = _check_shells(path, fields, problem)
    timeout = _check_timeout(fields, problem)

    min_role = Role.TIER1
    if "min_role" in fields:
        value = fields["min_role"][1]
        try:
            min_role = Role.parse(value if isinstance(value, str) else repr(value))
        except InvalidArgument:
            problem("min_role", f"unknown min_role {value!r}; write tier1, tier2, tier3 or admin")
        else:
            if min_role < Role.TIER1:
                problem(
                    "min_role",
                    f"min_role {value!r} would let viewers run it, and running anything needs "
                    "tier1 at least; write tier1, tier2, tier3 or admin",
                )

    args = fields.get("args", (header_line, ""))[1]
    if not isinstance(args, str):
        problem("args", 'args is a usage hint and must be text; write e.g. `args: "[PATH]"`')

    params: tuple[Param, ...] = ()
    if "params" in fields:
        # The header's YAML starts on the line after the opening fence.
        params = parse_params(
            fields["params"][2],
            lambda node: header_line + 1 + node.start_mark.line,
            str(path),
            errors,
        )

    if len(errors) != problems:
        return None
    assert isinstance(name, str) and isinstance(description, str) and isinstance(args, str)
    return Script(
        name=name,
        description=description.strip(),
        shells=shells,
        timeout_seconds=timeout,
        min_role=min_role,
        args=args.strip(),
        path=path,
        line=header_line,
        body=body,
        params=params,
    )


Problem = Callable[[str, str], None]  # records "file:line: text" at a header key's line


def _check_shells(path: Path, fields: Fields, problem: Problem) -> tuple[str, ...]:
    guess = EXTENSION_SHELLS.get(path.suffix, ("bash",))[-1]
    if "shells" not in fields:
        problem("shells", f"the header has no shells; add e.g. `shells: [{guess}]`")
        return ()
    value = fields["shells"][1]
    if isinstance(value, str):
        problem("shells", f"shells is a list; write `shells: [{value}]`")
        return ()
    if not isinstance(value, list) or not value:
        problem("shells", f"shells must be a non-empty list; write e.g. `shells: [{guess}]`")
        return ()
    shells: list[str] = []
    for shell in value:
        if shell not in SHELLS:
            problem("shells", f"unknown shell {shell!r}; use {', '.join(SHELLS)}")
        elif shell in shells:
            problem("shells", f"shell {shell!r} is listed twice; list it once")
        else:
            shells.append(shell)
    if len(shells) != len(value):
        return ()
    allowed = EXTENSION_SHELLS.get(path.suffix)
    if allowed is None:
        problem(
            "shells",
            f"the file extension {path.suffix or '(none)'!r} is not a script's; rename the file "
            f"to {path.stem}{SHELL_EXTENSION[shells[0]]}",
        )
    elif shells[0] not in allowed:
        problem(
            "shells",
            f"the first shell {shells[0]!r} does not fit the extension {path.suffix!r} (which "
            f"means {' or '.join(allowed)}); rename the file to "
            f"{path.stem}{SHELL_EXTENSION[shells[0]]} or list {allowed[-1]} first",
        )
    return tuple(shells)


def _check_timeout(fields: Fields, problem: Problem) -> float:
    if "timeout" not in fields:
        return DEFAULT_TIMEOUT_SECONDS
    value = fields["timeout"][1]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        problem("timeout", "timeout must be a duration; write e.g. `timeout: 5m`")
        return DEFAULT_TIMEOUT_SECONDS
    try:
        seconds = parse_duration(str(value))
    except InvalidArgument:
        problem(
            "timeout",
            f"timeout {value!r} is not a duration; write e.g. `timeout: 90s`, `5m` or `1h30m`",
        )
        return DEFAULT_TIMEOUT_SECONDS
    if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        problem(
            "timeout",
            f"timeout {value!r} must be more than 0 and at most {MAX_TIMEOUT}; "
            "write e.g. `timeout: 5m`",
        )
        return DEFAULT_TIMEOUT_SECONDS
    return seconds
