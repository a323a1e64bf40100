"""List systemd service units and their states with systemctl."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rmm_agent.collectors.base import CommandRunner

LIST_UNITS = ["systemctl", "list-units", "--type=service", "--all", "--no-legend", "--plain"]

# Markers systemctl puts before a unit name when --plain is not honoured (old versions, or
# output recorded without it): a black circle for units in trouble, a multiplication sign
# (U+00D7) for failed units since systemd 249, "*" when the locale is not UTF-8.
_MARKERS = ("●", "*", "\u00d7")


@dataclass(frozen=True, slots=True)
class ServiceState:
    """One service's state, in systemd's vocabulary (Windows services are mapped onto it)."""

    unit: str
    load: str
    active: str
    sub: str


def list_units_fields(line: str) -> list[str]:
    """Split one `systemctl list-units --plain` line into UNIT LOAD ACTIVE SUB [DESCRIPTION],
    without the state marker some systemd versions print first."""
    parts = line.split(None, 4)
    if parts and parts[0] in _MARKERS:
        parts = line.split(None, 5)[1:]
    return parts


def parse_list_units(text: str) -> list[ServiceState]:
    """Parse `systemctl list-units --no-legend --plain`: UNIT LOAD ACTIVE SUB DESCRIPTION."""
    services = []
    for line in text.splitlines():
        parts = list_units_fields(line)
        if len(parts) < 4:
            continue
        unit, load, active, sub = parts[:4]
        services.append(ServiceState(unit, load, active, sub))
    return services


def systemd_running(run_root: Path = Path("/run")) -> bool:
    """Tell whether systemd is this host's init, as sd_booted(3) does."""
    return (run_root / "systemd" / "system").is_dir()


def read_services(runner: CommandRunner) -> list[ServiceState]:
    """Run systemctl and return every service unit it knows, loaded or not."""
    return parse_list_units(runner(LIST_UNITS))
