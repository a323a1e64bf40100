"""Read hardware facts on Linux from /proc/cpuinfo, /sys/class/dmi/id and /sys/block."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmm_agent.collectors._common import read_int, read_line, read_text

# /sys/class/dmi/id attribute -> inventory field. product_serial, product_uuid and
# board_serial are readable by root only: as another user they come back as None.
DMI_FIELDS = {
    "sys_vendor": "vendor",
    "product_name": "model",
    "product_version": "version",
    "product_serial": "serial",
    "product_uuid": "uuid",
    "board_vendor": "board_vendor",
    "board_name": "board_model",
    "board_serial": "board_serial",
    "bios_vendor": "bios_vendor",
    "bios_version": "bios_version",
    "bios_date": "bios_date",
    "chassis_type": "chassis_type",
}

# SMBIOS chassis type codes (DMTF DSP0134, 7.4.1) most often met on managed hosts.
CHASSIS_TYPES = {
    "3": "desktop", "4": "low-profile desktop", "6": "mini tower", "7": "tower",
    "8": "portable", "9": "laptop", "10": "notebook", "13": "all-in-one", "14": "sub-notebook",
    "17": "main server chassis", "23": "rack mount chassis", "30": "tablet",
    "31": "convertible", "32": "detachable", "35": "mini pc", "36": "stick pc", "1": "other",
    "2": "unknown",
}  # fmt: skip

# Placeholders firmware vendors leave in unset DMI fields; they carry no information.
DMI_PLACEHOLDERS = frozenset(
    {
        "", "to be filled by o.e.m.", "default string", "system product name",
        "system manufacturer", "not specified", "not applicable", "none", "0123456789",
        "system serial number", "o.e.m.", "oem", "123456789",
    }
)  # fmt: skip


@dataclass(slots=True)
class CpuInfo:
    """What /proc/cpuinfo says about the processor."""

    model: str | None = None
    vendor: str | None = None
    flags: frozenset[str] = field(default_factory=frozenset)
    logical: int = 0
    sockets: int = 0


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse /proc/cpuinfo (x86 and ARM layouts)."""
    info = CpuInfo()
    sockets: set[str] = set()
    machine_model = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            info.logical += 1
        elif key == "model name" and info.model is None:
            info.model = value
        elif key == "vendor_id" and info.vendor is None:
            info.vendor = value
        elif key == "physical id":
            sockets.add(value)
        elif key in ("flags", "Features") and not info.flags:
            info.flags = frozenset(value.split())
        elif key == "Model":
            # ARM boards name the machine rather than the core: "Raspberry Pi 4 Model B Rev 1.4".
            machine_model = value
        elif key == "Hardware" and machine_model is None:
            machine_model = value  # the SoC ("BCM2835"), when there is no Model line
        elif key == "CPU implementer" and info.vendor is None:
            info.vendor = f"ARM implementer {value}"
    if info.model is None:
        info.model = machine_model
    info.sockets = len(sockets) or (1 if info.logical else 0)
    return info


def clean_dmi(value: str | None) -> str | None:
    """Return a DMI string, or None for an empty or placeholder value."""
    if value is None or value.strip().lower() in DMI_PLACEHOLDERS:
        return None
    return value.strip()


def read_dmi(sys_root: Path = Path("/sys")) -> dict[str, str | None]:
    """Read vendor, model, serial and BIOS fields; unreadable ones are None."""
    base = sys_root / "class" / "dmi" / "id"
    result = {name: clean_dmi(read_line(base / attr)) for attr, name in DMI_FIELDS.items()}
    chassis = result.get("chassis_type")
    if chassis is not None:
        result["chassis_type"] = CHASSIS_TYPES.get(chassis, chassis)
    return result


def read_block_devices(sys_root: Path = Path("/sys")) -> list[dict[str, Any]]:
    """Read the physical disks under /sys/block with their size, model and serial."""
    base = sys_root / "block"
    if not base.is_dir():
        return []
    disks = []
    for dev in sorted(base.iterdir()):
        # Only devices backed by hardware have a `device` link: loop, zram, dm-* and md*
        # volumes do not, and their space is already counted on the disks beneath them.
        device = dev / "device"
        if not device.exists():
            continue
        sectors = read_int(dev / "size")
        rotational = read_int(dev / "queue" / "rotational")
        removable = read_int(dev / "removable")
        disks.append(
            {
                "name": dev.name,
                # /sys/block/*/size counts 512-byte sectors whatever the device's block size.
                "size_bytes": sectors * 512 if sectors is not None else None,
                "model": read_line(device / "model"),
                "vendor": read_line(device / "vendor"),
                "serial": read_line(device / "serial") or read_line(dev / "serial"),
                "firmware": read_line(device / "firmware_rev") or read_line(device / "rev"),
                "rotational": bool(rotational) if rotational is not None else None,
                "removable": bool(removable) if removable is not None else None,
            }
        )
    return disks


def read_cpuinfo(proc_root: Path = Path("/proc")) -> CpuInfo:
    """Read and parse /proc/cpuinfo; empty when unreadable."""
    text = read_text(proc_root / "cpuinfo")
    return parse_cpuinfo(text) if text else CpuInfo()


def is_physical_nic(sys_root: Path, name: str) -> bool:
    """Tell whether a network interface is backed by a device (not a bridge, veth or tunnel)."""
    return (sys_root / "class" / "net" / name / "device").exists()
