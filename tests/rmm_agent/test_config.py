from __future__ import annotations

from pathlib import Path

import pytest

from rmm_agent.config import ACTION_NAMES, load_config
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


def test_action_settings_default_to_allowing_everything(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("interval: 15s\n")
    config = load_config(path, KNOWN)
    assert config.forbid_actions == []
    assert config.scripts == "any"
    assert config.max_file_bytes == 8 * 1024 * 1024
    assert config.script_output_limit == 65536
    assert config.reboot_command is None


def test_action_settings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "forbid_actions: [reboot, push_file]\n"
        "scripts: library\n"
        "max_file_bytes: 1048576\n"
        "script_output_limit: 4096\n"
        "reboot_command: [/usr/local/sbin/safe-reboot, --now]\n"
    )
    config = load_config(path, KNOWN)
    assert config.forbid_actions == ["reboot", "push_file"]
    assert config.scripts == "library"
    assert config.max_file_bytes == 1048576
    assert config.script_output_limit == 4096
    assert config.reboot_command == ["/usr/local/sbin/safe-reboot", "--now"]


def test_action_names_come_from_the_command_contract() -> None:
    assert set(ACTION_NAMES) == {
        "run_script",
        "list_processes",
        "kill_process",
        "list_services",
        "service_control",
        "reboot",
        "push_file",
        "pull_file",
        "collect_now",
        "install_updates",
        "driver_package",
    }


def test_bad_action_settings_name_the_line_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "forbid_actions: [reboot, format_disk]\n"
        "scripts: some\n"
        "max_file_bytes: 0\n"
        "script_output_limit: true\n"
        "reboot_command: shutdown -r now\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, KNOWN)
    message = str(caught.value)
    assert (
        f"{path}:1:1: forbid_actions: unknown actions format_disk; known: collect_now," in message
    )
    assert f"{path}:2:1: scripts: must be one of any, library, none" in message
    assert f"{path}:3:1: max_file_bytes: must be a whole number of bytes above 0, not 0" in message
    assert f"{path}:4:1: script_output_limit: must be a whole number" in message
    assert f"{path}:5:1: reboot_command: must be a command and its arguments" in message


def test_empty_reboot_command_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("reboot_command: []\n")
    with pytest.raises(ConfigError, match="reboot_command: must be a command"):
        load_config(path, KNOWN)


def test_consent_settings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "consent_timeout: 90s\n"
        'consent_contact: "call Example MSP at 555-0100"\n'
        'consent_ask_command: [/usr/local/bin/ask, "{title}", "{message}", "{timeout}"]\n'
        "consent_notify_command: [/usr/local/bin/tell, --user, '{user}', '{message}']\n"
    )
    config = load_config(path, KNOWN)
    assert config.consent_timeout_seconds == 90
    assert config.consent_contact == "call Example MSP at 555-0100"
    assert config.consent_ask_command == ["/usr/local/bin/ask", "{title}", "{message}", "{timeout}"]
    assert config.consent_notify_command == ["/usr/local/bin/tell", "--user", "{user}", "{message}"]
    defaults = load_config(write_empty(tmp_path), KNOWN)
    assert (defaults.consent_timeout_seconds, defaults.consent_contact) == (120.0, "")
    assert defaults.consent_ask_command is None and defaults.consent_notify_command is None


def write_empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    return path


def test_bad_consent_settings_name_the_line_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "consent_timeout: 0.5s\n"
        "consent_contact: [555, 0100]\n"
        'consent_ask_command: [ask, "{tittle}"]\n'
        "consent_notify_command: notify-send hello\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, KNOWN)
    message = str(caught.value)
    assert f"{path}:1:1: consent_timeout: must be at least 1s" in message
    assert f"{path}:2:1: consent_contact: must be text" in message
    assert (
        f"{path}:3:1: consent_ask_command: unknown placeholder {{tittle}}; "
        "known: {title}, {message}, {timeout}, {user}, {display}, {tty}"
    ) in message
    assert f"{path}:4:1: consent_notify_command: must be a command and its arguments" in message


def test_spool_bounds_default_and_are_read(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("interval: 15s\n")
    config = load_config(path, KNOWN)
    assert config.spool_max_reports == 20_000
    assert config.spool_max_bytes == 50 * 1024 * 1024
    path.write_text("spool_max_reports: 100\nspool_max_bytes: 1048576\n")
    config = load_config(path, KNOWN)
    assert (config.spool_max_reports, config.spool_max_bytes) == (100, 1048576)


def test_bad_spool_bounds_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("spool_max_reports: 0\nspool_max_bytes: 50MB\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, KNOWN)
    message = str(caught.value)
    assert f"{path}:1:1: spool_max_reports: must be a whole number above 0, not 0" in message
    assert f"{path}:2:1: spool_max_bytes: must be a whole number of bytes above 0" in message


def test_every_error_comes_at_once_each_with_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "interval: 0.5s\n"
        "disabled_collectors: [gpu]\n"
        "log_level: loud\n"
        "log_level: debug\n"
        "[a]: 1\n"
        "scripts: !!int abc\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, KNOWN)
    lines = str(caught.value).splitlines()
    assert lines == [
        f"{path}:4:1: duplicate key 'log_level' (keep one)",
        f"{path}:5:1: keys must be plain strings",
        f"{path}:3:1: log_level: must be one of debug, info, warning, error",
        f"{path}:6:1: scripts: YAML cannot read this value: ValueError: invalid literal for int()"
        " with base 10: 'abc'",
        f"{path}:1:1: interval must be at least 1s",
        f"{path}:2:1: disabled_collectors names unknown collectors gpu; known: cpu, sensors",
    ]


def test_a_configuration_that_is_not_a_mapping_names_its_position(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("- interval: 15s\n")
    with pytest.raises(ConfigError, match=rf"^{path}:1:1: the configuration must be a mapping$"):
        load_config(path, KNOWN)
