"""Test parsing of systemctl list-units output."""

from __future__ import annotations

from pathlib import Path

from rmm_agent.collectors.services_linux import (
    LIST_UNITS,
    ServiceState,
    parse_list_units,
    read_services,
    systemd_running,
)

from .helpers import FakeRunner, fixture_text


def test_parse_plain_output() -> None:
    services = parse_list_units(fixture_text("systemctl_list-units_service_all_plain.txt"))
    assert len(services) == 22
    assert ServiceState("nginx.service", "loaded", "failed", "failed") in services
    assert ServiceState("auditd.service", "not-found", "inactive", "dead") in services
    assert ServiceState("apt-daily.service", "loaded", "activating", "start") in services
    escaped = "systemd-fsck@dev-disk-by\\x2duuid-6a1b2c3d\\x2d4e5f.service"
    assert ServiceState(escaped, "loaded", "active", "exited") in services


def test_parse_output_with_state_markers() -> None:
    services = parse_list_units(fixture_text("systemctl_list-units_service_all_bullets_rhel8.txt"))
    assert [s.unit for s in services if s.active == "failed"] == ["httpd.service", "kdump.service"]
    assert ServiceState("ntpd.service", "not-found", "inactive", "dead") in services
    assert len(services) == 9


def test_parse_newer_failed_marker_and_junk() -> None:
    text = "\u00d7 nginx.service loaded failed failed nginx\n\n  \nonly two\n"
    assert parse_list_units(text) == [ServiceState("nginx.service", "loaded", "failed", "failed")]


def test_read_services_runs_list_units() -> None:
    runner = FakeRunner({tuple(LIST_UNITS): "cron.service loaded active running cron\n"})
    assert read_services(runner) == [ServiceState("cron.service", "loaded", "active", "running")]


def test_systemd_running(tmp_path: Path) -> None:
    assert not systemd_running(tmp_path)
    (tmp_path / "systemd" / "system").mkdir(parents=True)
    assert systemd_running(tmp_path)
