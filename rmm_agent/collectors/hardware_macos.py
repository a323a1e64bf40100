"""Read model, serial, CPU and drives on macOS from system_profiler."""

from __future__ import annotations

import json
from typing import Any

from rmm_agent.collectors.base import CommandRunner

SYSTEM_PROFILER = ["system_profiler", "-json", "SPHardwareDataType", "SPStorageDataType"]


def parse_system_profiler(text: str) -> dict[str, Any]:
    """Return cpu, system and disks facts from `system_profiler -json` output."""
    data = json.loads(text)
    hw = (data.get("SPHardwareDataType") or [{}])[0]
    system = {
        "vendor": "Apple Inc.",
        "model": hw.get("machine_name"),
        "version": hw.get("machine_model"),
        "serial": hw.get("serial_number"),
        "uuid": hw.get("platform_UUID"),
        "bios_version": hw.get("boot_rom_version"),
    }
    # Apple silicon reports chip_type ("Apple M1"), Intel Macs cpu_type ("Quad-Core Intel Core i7").
    cpu = {"model": hw.get("chip_type") or hw.get("cpu_type"), "vendor": None}
    disks: dict[str, dict[str, Any]] = {}
    for volume in data.get("SPStorageDataType") or []:
        drive = volume.get("physical_drive") or {}
        model = drive.get("device_name")
        if not model or model in disks:
            continue  # several volumes live on one drive: list the drive once
        disks[model] = {
            "name": volume.get("bsd_name"),
            "size_bytes": None,
            "model": model,
            "vendor": None,
            "serial": None,
            "firmware": None,
            "rotational": drive.get("medium_type") == "rotational",
            "removable": drive.get("is_internal_disk") == "no",
        }
    return {"cpu": cpu, "system": system, "disks": list(disks.values())}


def read_hardware(runner: CommandRunner) -> dict[str, Any]:
    """Run system_profiler once for hardware and storage facts."""
    return parse_system_profiler(runner(SYSTEM_PROFILER))
