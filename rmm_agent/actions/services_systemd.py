"""Services on Linux: systemd units through systemctl."""

from __future__ import annotations

import shutil
from pathlib import Path

from rmm_agent.actions.base import ActionFailed, Which
from rmm_agent.actions.services_common import Runner, check_service_name, matches, state_of, verb
from rmm_agent.collectors.services_linux import (
    LIST_UNITS,
    ServiceState,
    list_units_fields,
    systemd_running,
)
from rmm_proto import commands_pb2

LIST_UNITS_COMMAND = [*LIST_UNITS, "--no-pager"]
LIST_UNIT_FILES_COMMAND = [
    "systemctl",
    "list-unit-files",
    "--type=service",
    "--no-legend",
    "--no-pager",
]
SHOW_PROPERTIES = ("Id", "Description", "LoadState", "ActiveState", "SubState", "UnitFileState")


def check_systemd(run_root: Path = Path("/run"), which: Which = shutil.which) -> None:
    """Raise ActionFailed unless systemctl is installed and systemd runs this host."""
    if which("systemctl") is None:
        raise ActionFailed(
            "systemctl is not installed on this host; services are managed through systemd only"
        )
    if not systemd_running(run_root):
        raise ActionFailed(
            f"this host is not booted with systemd (no {run_root / 'systemd' / 'system'}), so "
            "systemctl cannot list or control its services"
        )


def control_command(operation: commands_pb2.ServiceOperation, name: str) -> list[str]:
    """Return the systemctl command line that starts, stops or restarts `name`."""
    # --no-ask-password: nobody is there to type one; "--": a name is never an option.
    return ["systemctl", "--no-ask-password", verb(operation), "--", check_service_name(name)]


def show_command(name: str) -> list[str]:
    """Return the systemctl command line that reads a unit's state."""
    return [
        "systemctl",
        "show",
        "--no-pager",
        f"--property={','.join(SHOW_PROPERTIES)}",
        "--",
        check_service_name(name),
    ]


def parse_units(text: str) -> list[tuple[ServiceState, str]]:
    """Parse `systemctl list-units --plain --no-legend` into (state, description) pairs."""
    units = []
    for line in text.splitlines():
        fields = list_units_fields(line)
        if len(fields) < 4:
            continue
        unit, load, active, sub = fields[:4]
        description = fields[4].strip() if len(fields) == 5 else ""
        units.append((ServiceState(unit, load, active, sub), description))
    return units


def parse_unit_files(text: str) -> dict[str, str]:
    """Parse `systemctl list-unit-files --no-legend`: UNIT STATE [PRESET] -> {unit: state}."""
    states = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            states[fields[0]] = fields[1]
    return states


def start_mode(unit: str, load: str, unit_files: dict[str, str]) -> str:
    """Return a unit's unit-file state (enabled, static...), an instance's from its template."""
    mode = unit_files.get(unit)
    if mode is None and "@" in unit:
        prefix, _, rest = unit.partition("@")
        mode = unit_files.get(f"{prefix}@{rest[rest.rfind('.') :]}")
    if mode is None:
        # No unit file: not-found, masked or bad-setting say more than "unknown".
        mode = load if load != "loaded" else "unknown"
    return mode


def parse_show(text: str) -> dict[str, str]:
    """Parse `systemctl show` KEY=VALUE lines."""
    properties = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            properties[key] = value
    return properties


def service_from_show(properties: dict[str, str], name: str) -> commands_pb2.ServiceInfo:
    """Return the ServiceInfo `systemctl show` describes."""
    load = properties.get("LoadState", "")
    return commands_pb2.ServiceInfo(
        name=properties.get("Id") or name,
        description=properties.get("Description", ""),
        state=state_of(properties.get("ActiveState", "")),
        start_mode=properties.get("UnitFileState") or (load if load != "loaded" else "unknown"),
    )


def list_services(run: Runner, wanted: str = "") -> list[commands_pb2.ServiceInfo]:
    """List every service unit (loaded or not) whose name contains `wanted`."""
    units = run(LIST_UNITS_COMMAND).checked()
    unit_files = parse_unit_files(run(LIST_UNIT_FILES_COMMAND).checked())
    services = [
        commands_pb2.ServiceInfo(
            name=state.unit,
            description=description,
            state=state_of(state.active),
            start_mode=start_mode(state.unit, state.load, unit_files),
        )
        for state, description in parse_units(units)
        if matches(state.unit, wanted)
    ]
    return sorted(services, key=lambda s: s.name)


def control(
    run: Runner, operation: commands_pb2.ServiceOperation, name: str
) -> commands_pb2.ServiceResult:
    """Start, stop or restart a unit and return its state afterwards.

    A failed operation raises ActionFailed that still carries the state and what systemctl said.
    """
    done = run(control_command(operation, name))
    shown = run(show_command(name))
    service = service_from_show(parse_show(shown.stdout), name) if shown.returncode == 0 else None
    result = commands_pb2.ServiceResult(service=service, output=done.output)
    if done.returncode != 0:
        raise ActionFailed(done.failure(), service=result)
    return result
