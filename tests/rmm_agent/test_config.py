from __future__ import annotations

from pathlib import Path

import pytest

from rmm_agent.config import load_config
from rmm_common.errors import ConfigError

KNOWN = {"cpu", "sensors"}


def test_config_values_are_read(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("interval: 15s\ndisabled_collectors: [sensors]\ninventory_interval: 2h\n")
    config = load_config(path, KNOWN)
    assert config.interval_seconds == 15
    assert config.disabled_collectors == ["sensors"]
    assert config.inventory_interval_seconds == 7200


def test_every_error_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("interval: 15s\nintervall: 10s\ndisabled_collectors: [gpu]\nlog_level: loud\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, KNOWN)
    message = str(caught.value)
    assert f"{path}:2:1: unknown key 'intervall'" in message
    assert f"{path}:4:1: log_level: must be one of" in message
    assert "unknown collectors gpu" in message


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("interval: 15s\n  bad: [\n")
    with pytest.raises(ConfigError, match=rf"{path}:2:"):
        load_config(path, KNOWN)
