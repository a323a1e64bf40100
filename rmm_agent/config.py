"""The agent's optional YAML configuration: strict, every error with its file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmm_common.durations import parse_duration
from rmm_common.errors import ConfigError, InvalidArgument

DEFAULT_INTERVAL_SECONDS = 30.0
MIN_INTERVAL_SECONDS = 1.0


@dataclass(slots=True)
class AgentConfig:
    """What the host owner may set for the agent."""

    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    collector_timeout_seconds: float = 10.0
    inventory_interval_seconds: float = 3600.0
    disabled_collectors: list[str] = field(default_factory=list)
    log_level: str = "info"
    log_format: str = "text"


# key -> (field name, converter); durations accept "30s", "5m" or plain seconds.
def _duration(value: Any) -> float:
    return parse_duration(str(value))


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidArgument("must be a list of names")
    return list(value)


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
}


def load_config(path: Path, known_collectors: set[str]) -> AgentConfig:
    """Read and check an agent configuration file; raise ConfigError listing every problem."""
    # Imported here: most agents run without a config file, and PyYAML costs ~1.8 MB resident.
    import yaml  # noqa: PLC0415

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the agent configuration: {exc.strerror}") from exc
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    config = AgentConfig()
    if root is None:
        return config
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}:{root.start_mark.line + 1}: the configuration must be a mapping")
    errors: list[str] = []
    for key_node, value_node in root.value:
        where = f"{path}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}"
        key = key_node.value
        if key not in FIELDS:
            errors.append(f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(FIELDS))}")
            continue
        attribute, convert = FIELDS[key]
        try:
            value = convert(yaml.safe_load(yaml.serialize(value_node)))
        except (InvalidArgument, yaml.YAMLError) as exc:
            errors.append(f"{where}: {key}: {exc}")
            continue
        setattr(config, attribute, value)
    if config.interval_seconds < MIN_INTERVAL_SECONDS:
        errors.append(f"{path}: interval must be at least {MIN_INTERVAL_SECONDS:g}s")
    unknown = sorted(set(config.disabled_collectors) - known_collectors)
    if unknown:
        errors.append(
            f"{path}: disabled_collectors names unknown collectors {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known_collectors))}"
        )
    if errors:
        raise ConfigError("\n".join(errors))
    return config
