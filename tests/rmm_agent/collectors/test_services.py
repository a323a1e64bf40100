"""Test the services collector: counts by state, failed units named, refresh interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_agent.collectors.base import CommandError
from rmm_agent.collectors.services import ServicesCollector
from rmm_agent.collectors.services_linux import LIST_UNITS

from .helpers import FakeClock, FakeRunner, check_output, fixture_text, value, values
from .test_services_windows import fake_psutil

LIST = tuple(LIST_UNITS)


def systemd_root(tmp_path: Path) -> Path:
    (tmp_path / "systemd" / "system").mkdir(parents=True)
    return tmp_path


def test_failed_units_are_named(tmp_path: Path) -> None:
    runner = FakeRunner({LIST: fixture_text("systemctl_list-units_service_all_plain.txt")})
    out = ServicesCollector(
        runner=runner, run_root=systemd_root(tmp_path), platform="linux"
    ).collect()
    assert set(values(out, "service_failed")) == {
        (("unit", "nginx.service"),),
        (("unit", "systemd-networkd-wait-online.service"),),
    }
    assert value(out, "services_by_state", state="failed") == 2
    assert value(out, "services_by_state", state="active") == 14
    assert value(out, "services_by_state", state="activating") == 1
    assert value(out, "services_by_state", state="inactive") == 4
    assert value(out, "services_by_state", state="deactivating") == 1
    assert out.info["failed"] == ["nginx.service", "systemd-networkd-wait-online.service"]
    nginx = next(s for s in out.info["services"] if s["unit"] == "nginx.service")
    assert nginx == {"unit": "nginx.service", "load": "loaded", "active": "failed", "sub": "failed"}
    check_output(ServicesCollector, out)


def test_systemctl_runs_at_most_every_refresh_seconds(tmp_path: Path) -> None:
    runner = FakeRunner({LIST: "cron.service loaded active running cron\n"})
    clock = FakeClock()
    collector = ServicesCollector(
        runner=runner,
        run_root=systemd_root(tmp_path),
        platform="linux",
        clock=clock,
        refresh_seconds=60,
    )
    collector.collect()
    clock.advance(59)
    collector.collect()
    assert len(runner.calls) == 1
    runner.answers[LIST] = "cron.service loaded failed failed cron\n"
    clock.advance(1)
    out = collector.collect()
    assert len(runner.calls) == 2
    assert value(out, "service_failed", unit="cron.service") == 1.0
    assert value(out, "services_by_state", state="active") == 0


def test_without_systemd_it_says_so_and_runs_nothing(tmp_path: Path) -> None:
    runner = FakeRunner({})
    out = ServicesCollector(runner=runner, run_root=tmp_path, platform="linux").collect()
    assert out.samples == []
    assert out.info == {
        "available": False,
        "reason": f"systemd is not running (no {tmp_path}/systemd/system)",
    }
    assert runner.calls == []


def test_systemctl_failure_under_systemd_is_raised(tmp_path: Path) -> None:
    runner = FakeRunner({LIST: CommandError("systemctl list-units: exited 1: Access denied")})
    collector = ServicesCollector(runner=runner, run_root=systemd_root(tmp_path), platform="linux")
    with pytest.raises(CommandError, match="Access denied"):
        collector.collect()


def test_windows_services() -> None:
    out = ServicesCollector(psutil_module=fake_psutil(), platform="win32").collect()
    # Paused counts as active; svsvc vanished while being listed.
    assert value(out, "services_by_state", state="active") == 6
    assert value(out, "services_by_state", state="inactive") == 4
    assert value(out, "services_by_state", state="activating") == 1
    assert value(out, "services_by_state", state="deactivating") == 0
    assert values(out, "service_failed") == {}
    assert out.info["automatic_stopped"] == ["Spooler", "edgeupdate"]
    check_output(ServicesCollector, out)


@pytest.mark.linux
def test_real_host_without_systemd_does_not_raise() -> None:
    out = ServicesCollector().collect()
    if Path("/run/systemd/system").is_dir():
        assert value(out, "services_by_state", state="active") > 0
    else:
        assert out.info["available"] is False
