"""Read battery wear on Linux from /sys/class/power_supply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rmm_agent.collectors._common import read_line

# Attributes a battery exposes in sysfs, in µWh (energy_*) or µAh (charge_*) depending on
# the firmware; a battery has one pair or the other.
BATTERY_ATTRIBUTES = (
    "type",
    "scope",
    "energy_full",
    "energy_full_design",
    "charge_full",
    "charge_full_design",
    "cycle_count",
    "manufacturer",
    "model_name",
    "technology",
)


@dataclass(frozen=True, slots=True)
class BatteryHealth:
    """How worn one battery is."""

    name: str
    health_ratio: float | None
    cycle_count: int | None
    details: dict[str, str]


def _int(value: str | None) -> int | None:
    """Return `value` as an integer, or None if absent or not a number."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def parse_battery(name: str, attributes: Mapping[str, str]) -> BatteryHealth | None:
    """Return a battery's wear from its sysfs attributes, or None if it is not a system battery."""
    if attributes.get("type") != "Battery":
        return None
    # scope=Device marks a peripheral's battery (mouse, headset), not the machine's own.
    if attributes.get("scope") == "Device":
        return None
    ratio = None
    for full_key, design_key in (
        ("energy_full", "energy_full_design"),
        ("charge_full", "charge_full_design"),
    ):
        full, design = _int(attributes.get(full_key)), _int(attributes.get(design_key))
        if full is not None and design:
            # Not clamped: a new battery may hold a little more than its design capacity.
            ratio = full / design
            break
    cycles = _int(attributes.get("cycle_count"))
    details = {
        k: attributes[k] for k in ("manufacturer", "model_name", "technology") if k in attributes
    }
    # Many firmwares report cycle_count 0 when they do not count cycles at all.
    return BatteryHealth(name, ratio, cycles if cycles else None, details)


def read_battery_health(sys_root: Path = Path("/sys")) -> list[BatteryHealth]:
    """Read every system battery under `sys_root`/class/power_supply."""
    base = sys_root / "class" / "power_supply"
    if not base.is_dir():
        return []
    batteries = []
    for supply in sorted(base.iterdir()):
        attributes = {}
        for attribute in BATTERY_ATTRIBUTES:
            value = read_line(supply / attribute)
            if value is not None:
                attributes[attribute] = value
        battery = parse_battery(supply.name, attributes)
        if battery is not None:
            batteries.append(battery)
    return batteries
