"""The agent's optional YAML configuration: strict, every error at once with file:line:col."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmm_common.durations import parse_duration
from rmm_common.errors import ConfigError, InvalidArgument
from rmm_proto import commands_pb2

DEFAULT_INTERVAL_SECONDS = 30.0
MIN_INTERVAL_SECONDS = 1.0
DEFAULT_MAX_FILE_BYTES = 8 * 1024 * 1024
DEFAULT_SCRIPT_OUTPUT_LIMIT = 64 * 1024
# The report spool's bound (rmm_agent/spool.py): 20,000 reports are a week at 30 s; a typical
# report is about 3 KB compressed (9 KB raw), so 50 MiB holds about 16,000 of them (5.5 days).
DEFAULT_SPOOL_MAX_REPORTS = 20_000
DEFAULT_SPOOL_MAX_BYTES = 50 * 1024 * 1024
# What consent_ask_command / consent_notify_command may contain (rmm_agent/consent/base.py).
CONSENT_PLACEHOLDERS = (
    "title",
    "message",
    "timeout",
    "user",
    "display",
    "tty",
    "operator",
    "msp",
    "ticket",
)
# The remote actions an operator may ask for: the fields of Command's `action` oneof.
ACTION_NAMES = tuple(
    f.name for f in commands_pb2.Command.DESCRIPTOR.oneofs_by_name["action"].fields
)


@dataclass(slots=True)
class AgentConfig:
    """What the host owner may set for the agent."""

    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    collector_timeout_seconds: float = 10.0
    inventory_interval_seconds: float = 3600.0
    disabled_collectors: list[str] = field(default_factory=list)
    log_level: str = "info"
    log_format: str = "text"
    # Remote actions this host refuses whoever asks (names from ACTION_NAMES).
    forbid_actions: list[str] = field(default_factory=list)
    # run_script: "any", "library" (only the server's library scripts) or "none".
    scripts: str = "any"
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    script_output_limit: int = DEFAULT_SCRIPT_OUTPUT_LIMIT
    # Replaces the OS's reboot command (argv); None: the OS default.
    reboot_command: list[str] | None = None
    # Consent (docs/consent.md): how long an asked user has to answer; whom they should call.
    consent_timeout_seconds: float = 120.0
    consent_contact: str = ""
    # Replace the built-in dialog (zenity, kdialog...) or notification (argv with placeholders).
    consent_ask_command: list[str] | None = None
    consent_notify_command: list[str] | None = None
    # Reports kept on disk while the server is away; past either bound the oldest go first.
    spool_max_reports: int = DEFAULT_SPOOL_MAX_REPORTS
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES


# key -> (field name, converter); durations accept "30s", "5m" or plain seconds.
def _duration(value: Any) -> float:
    return parse_duration(str(value))


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidArgument("must be a list of names")
    return list(value)


def _action_names(value: Any) -> list[str]:
    names = _names(value)
    unknown = sorted(set(names) - set(ACTION_NAMES))
    if unknown:
        raise InvalidArgument(
            f"unknown actions {', '.join(unknown)}; known: {', '.join(sorted(ACTION_NAMES))}"
        )
    return names


def _positive(unit: str) -> Callable[[Any], int]:
    """Return a check for a whole number above 0 of `unit` ("" for a plain count)."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidArgument(f"must be a whole number{unit} above 0, not {value!r}")
        return value

    return check


_positive_bytes, _positive_count = _positive(" of bytes"), _positive("")


def _argv(value: Any) -> list[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(item, str) and item for item in value)
    ):
        raise InvalidArgument(
            "must be a command and its arguments as a list of strings, e.g. [shutdown, -r, now]"
        )
    return list(value)


def _consent_timeout(value: Any) -> float:
    seconds = _duration(value)
    if seconds < 1:
        raise InvalidArgument("must be at least 1s: the user needs time to read and answer")
    return seconds


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument('must be text, e.g. "call Example MSP at 555-0100"')
    return value


def _consent_argv(value: Any) -> list[str] | None:
    argv = _argv(value)
    used = {name for arg in argv or () for name in re.findall(r"\{(\w+)\}", arg)}
    unknown = sorted(used - set(CONSENT_PLACEHOLDERS))
    if unknown:
        raise InvalidArgument(
            f"unknown placeholder {', '.join('{' + u + '}' for u in unknown)}; "
            f"known: {', '.join('{' + p + '}' for p in CONSENT_PLACEHOLDERS)}"
        )
    return argv


def _choice(*choices: str) -> Any:
    def convert(value: Any) -> str:
        if value not in choices:
            raise InvalidArgument(f"must be one of {', '.join(choices)}")
        return str(value)

    return convert


FIELDS: dict[str, tuple[str, Any]] = {
    "interval": ("interval_seconds", _duration),
    "collector_timeout": ("collector_timeout_seconds", _duration),
    "inventory_interval": ("inventory_interval_seconds", _duration),
    "disabled_collectors": ("disabled_collectors", _names),
    "log_level": ("log_level", _choice("debug", "info", "warning", "error")),
    "log_format": ("log_format", _choice("text", "json")),
    "forbid_actions": ("forbid_actions", _action_names),
    "scripts": ("scripts", _choice("any", "library", "none")),
    "max_file_bytes": ("max_file_bytes", _positive_bytes),
    "script_output_limit": ("script_output_limit", _positive_bytes),
    "reboot_command": ("reboot_command", _argv),
    "consent_timeout": ("consent_timeout_seconds", _consent_timeout),
    "consent_contact": ("consent_contact", _text),
    "consent_ask_command": ("consent_ask_command", _consent_argv),
    "consent_notify_command": ("consent_notify_command", _consent_argv),
    "spool_max_reports": ("spool_max_reports", _positive_count),
    "spool_max_bytes": ("spool_max_bytes", _positive_bytes),
}


def load_config(path: Path, known_collectors: set[str]) -> AgentConfig:
    """Read and check an agent configuration file; raise ConfigError listing every problem."""
    # Imported here: most agents run without a config file, and PyYAML costs ~1.8 MB resident.
    import yaml  # noqa: PLC0415

    from rmm_common import yamlnodes  # noqa: PLC0415

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the agent configuration: {exc.strerror}") from exc
    where = yamlnodes.Where(str(path))
    root = yamlnodes.compose(text, where)
    where.raise_errors(ConfigError)
    config = AgentConfig()
    if root is None:
        return config
    if not isinstance(root, yaml.MappingNode):
        where.add(root, "the configuration must be a mapping")
        where.raise_errors(ConfigError)
    items = yamlnodes.mapping(root, where, "", tuple(sorted(FIELDS))) or {}
    for key, (key_node, value_node) in items.items():
        attribute, convert = FIELDS[key]
        try:
            value = convert(yamlnodes.scalar(value_node))
        except InvalidArgument as exc:
            where.at(key_node, key, str(exc))
            continue
        except yamlnodes.Unreadable as exc:
            where.at(key_node, key, f"YAML cannot read this value: {exc.reason}")
            continue
        setattr(config, attribute, value)
    if config.interval_seconds < MIN_INTERVAL_SECONDS:
        where.add(items["interval"][0], f"interval must be at least {MIN_INTERVAL_SECONDS:g}s")
    unknown = sorted(set(config.disabled_collectors) - known_collectors)
    if unknown:
        where.add(
            items["disabled_collectors"][0],
            f"disabled_collectors names unknown collectors {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known_collectors))}",
        )
    where.raise_errors(ConfigError)
    return config
