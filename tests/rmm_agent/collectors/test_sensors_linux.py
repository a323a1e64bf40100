"""Test battery wear read from a /sys/class/power_supply tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_agent.collectors.sensors_linux import parse_battery, read_battery_health

from .helpers import write_tree

# Attribute files as a ThinkPad (energy_*, µWh), a Chromebook (charge_*, µAh), a wireless
# mouse (scope Device) and the mains adapter expose them.
POWER_SUPPLY = {
    "class/power_supply/AC/type": "Mains\n",
    "class/power_supply/AC/online": "1\n",
    "class/power_supply/BAT0/type": "Battery\n",
    "class/power_supply/BAT0/energy_full": "41920000\n",
    "class/power_supply/BAT0/energy_full_design": "57020000\n",
    "class/power_supply/BAT0/cycle_count": "412\n",
    "class/power_supply/BAT0/manufacturer": "SMP\n",
    "class/power_supply/BAT0/model_name": "5B10W13930\n",
    "class/power_supply/BAT0/technology": "Li-poly\n",
    "class/power_supply/BAT1/type": "Battery\n",
    "class/power_supply/BAT1/charge_full": "3900000\n",
    "class/power_supply/BAT1/charge_full_design": "4000000\n",
    "class/power_supply/BAT1/cycle_count": "0\n",
    "class/power_supply/hidpp_battery_0/type": "Battery\n",
    "class/power_supply/hidpp_battery_0/scope": "Device\n",
    "class/power_supply/hidpp_battery_0/energy_full": "1\n",
    "class/power_supply/hidpp_battery_0/energy_full_design": "2\n",
}


def test_read_battery_health(tmp_path: Path) -> None:
    batteries = read_battery_health(write_tree(tmp_path, POWER_SUPPLY))
    assert [b.name for b in batteries] == ["BAT0", "BAT1"]
    bat0, bat1 = batteries
    assert bat0.health_ratio == pytest.approx(41920000 / 57020000)
    assert bat0.cycle_count == 412
    assert bat0.details == {
        "manufacturer": "SMP",
        "model_name": "5B10W13930",
        "technology": "Li-poly",
    }
    assert bat1.health_ratio == pytest.approx(0.975)
    assert bat1.cycle_count is None, "0 cycles means the firmware does not count"


def test_no_power_supply_directory(tmp_path: Path) -> None:
    assert read_battery_health(tmp_path) == []


@pytest.mark.parametrize(
    "attributes",
    [
        {"type": "Battery", "energy_full": "100"},  # no design capacity
        {"type": "Battery", "energy_full": "100", "energy_full_design": "0"},
        {"type": "Battery", "energy_full": "unknown", "energy_full_design": "100"},
    ],
)
def test_health_unknown_without_usable_capacities(attributes: dict[str, str]) -> None:
    battery = parse_battery("BAT0", attributes)
    assert battery is not None and battery.health_ratio is None


def test_only_system_batteries() -> None:
    assert parse_battery("AC", {"type": "Mains"}) is None
    assert parse_battery("hid", {"type": "Battery", "scope": "Device"}) is None
