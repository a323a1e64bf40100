"""Test the sensors collector with fake psutil sensors and a fake sysfs."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rmm_agent.collectors.sensors import SensorsCollector

from .helpers import check_output, value, values, write_tree
from .test_sensors_linux import POWER_SUPPLY

Temp = namedtuple("Temp", "label current high critical")
Fan = namedtuple("Fan", "label current")
Battery = namedtuple("Battery", "percent secsleft power_plugged")


def fake_psutil(battery: Any = None) -> SimpleNamespace:
    temps = {
        "coretemp": [Temp("Package id 0", 54.0, 100.0, 100.0), Temp("Core 0", 51.0, None, None)],
        # Two NVMe drives share the chip name and the label.
        "nvme": [Temp("Composite", 38.85, 84.85, 0.0), Temp("Composite", 41.85, None, None)],
        "acpitz": [Temp("", 27.8, None, None)],
    }
    return SimpleNamespace(
        sensors_temperatures=lambda: temps,
        sensors_fans=lambda: {"thinkpad": [Fan("", 2650)]},
        sensors_battery=lambda: battery,
    )


def test_temperatures_fans_and_thresholds() -> None:
    out = SensorsCollector(psutil_module=fake_psutil(), sys_root=Path("/nonexistent")).collect()
    assert value(out, "sensor_temperature_celsius", chip="coretemp", sensor="Package id 0") == 54
    assert (
        value(out, "sensor_temperature_critical_celsius", chip="coretemp", sensor="Package id 0")
        == 100
    )
    assert value(out, "sensor_temperature_celsius", chip="nvme", sensor="Composite_2") == 41.85
    assert value(out, "sensor_temperature_celsius", chip="acpitz", sensor="temp1") == 27.8
    critical = values(out, "sensor_temperature_critical_celsius")
    assert (("chip", "nvme"), ("sensor", "Composite")) not in critical, "0 means unset"
    assert value(out, "sensor_fan_rpm", chip="thinkpad", sensor="fan1") == 2650
    assert "available" not in out.info
    check_output(SensorsCollector, out)


def test_battery_health_ratio_from_sysfs(tmp_path: Path) -> None:
    collector = SensorsCollector(
        psutil_module=fake_psutil(Battery(81.0, 5400, False)),
        sys_root=write_tree(tmp_path, POWER_SUPPLY),
        platform="linux",
    )
    out = collector.collect()
    assert value(out, "battery_health_ratio", battery="BAT0") == pytest.approx(0.7352, abs=1e-4)
    assert value(out, "battery_health_ratio", battery="BAT1") == pytest.approx(0.975)
    assert value(out, "battery_cycles", battery="BAT0") == 412
    assert value(out, "battery_charge_ratio") == pytest.approx(0.81)
    assert value(out, "battery_power_plugged") == 0.0
    assert value(out, "battery_time_left_seconds") == 5400
    assert set(out.info["batteries"]) == {"BAT0", "BAT1"}
    check_output(SensorsCollector, out)


def test_battery_health_is_linux_only(tmp_path: Path) -> None:
    out = SensorsCollector(
        psutil_module=fake_psutil(), sys_root=write_tree(tmp_path, POWER_SUPPLY), platform="win32"
    ).collect()
    assert values(out, "battery_health_ratio") == {}


def test_plugged_in_battery_has_no_time_left() -> None:
    # psutil says POWER_TIME_UNLIMITED (-2) while charging.
    out = SensorsCollector(
        psutil_module=fake_psutil(Battery(100.0, -2, True)), sys_root=Path("/nonexistent")
    ).collect()
    assert value(out, "battery_power_plugged") == 1.0
    assert values(out, "battery_time_left_seconds") == {}


def test_host_without_sensors_is_not_an_error(tmp_path: Path) -> None:
    # macOS and Windows psutil have no sensors_temperatures or sensors_fans at all.
    bare = SimpleNamespace(sensors_battery=lambda: None)
    out = SensorsCollector(psutil_module=bare, sys_root=tmp_path, platform="darwin").collect()
    assert out.samples == []
    assert out.info["available"] is False and out.info["reason"]


def test_a_host_without_sensors_is_looked_at_again_only_every_rescan_interval(
    tmp_path: Path,
) -> None:
    reads: list[str] = []
    temps: dict[str, list[Temp]] = {}

    def temperatures() -> dict[str, list[Temp]]:
        reads.append("temperatures")
        return temps

    bare = SimpleNamespace(
        sensors_temperatures=temperatures, sensors_fans=dict, sensors_battery=lambda: None
    )
    now = [100.0]
    collector = SensorsCollector(
        psutil_module=bare, sys_root=tmp_path, clock=lambda: now[0], empty_rescan_seconds=600
    )
    for _ in range(3):
        out = collector.collect()
        assert out.samples == [] and out.info["available"] is False and out.info["reason"]
    assert reads == ["temperatures"], "psutil's globs not run again within the interval"
    temps["acpitz"] = [Temp("", 27.8, None, None)]  # a sensor appears (a driver loaded)
    now[0] += 599
    assert collector.collect().samples == []
    now[0] += 1
    out = collector.collect()
    assert value(out, "sensor_temperature_celsius", chip="acpitz", sensor="temp1") == 27.8
    assert "available" not in out.info
    collector.collect()
    assert len(reads) == 3, "a host with sensors is read every cycle"
