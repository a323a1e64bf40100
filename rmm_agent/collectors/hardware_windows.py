"""Read CPU, firmware and disk models on Windows from the registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rmm_agent.collectors._winreg import WinregModule, read_values

CPU_KEY = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
BIOS_KEY = r"HARDWARE\DESCRIPTION\System\BIOS"
DISK_ENUM_KEY = r"SYSTEM\CurrentControlSet\Services\disk\Enum"

# BIOS key value -> inventory field. The serial number is not in the registry (only WMI's
# Win32_BIOS has it), so it stays None.
BIOS_FIELDS = {
    "SystemManufacturer": "vendor",
    "SystemProductName": "model",
    "SystemVersion": "version",
    "BaseBoardManufacturer": "board_vendor",
    "BaseBoardProduct": "board_model",
    "BIOSVendor": "bios_vendor",
    "BIOSVersion": "bios_version",
    "BIOSReleaseDate": "bios_date",
}


def parse_disk_instance(instance_id: str) -> dict[str, str | None]:
    """Return vendor, model and revision from a disk's device instance id."""
    # SCSI\Disk&Ven_NVMe&Prod_Samsung_SSD_970\5&2a6a0d4&0&000000 or
    # IDE\DiskST1000DM003-1CH162___________________CC47\5&1c5a3c2a&0&0.0.0
    parts = instance_id.split("\\")
    hardware_id = parts[1] if len(parts) > 1 else instance_id
    fields: dict[str, str | None] = {"vendor": None, "model": None, "revision": None}
    if "&" in hardware_id:
        for item in hardware_id.split("&"):
            key, sep, value = item.partition("_")
            if sep and key in ("Ven", "Prod", "Rev"):
                name = {"Ven": "vendor", "Prod": "model", "Rev": "revision"}[key]
                fields[name] = value.replace("_", " ").strip() or None
    elif hardware_id.startswith("Disk"):
        model, _, revision = hardware_id[4:].partition("_")
        fields["model"] = model or None
        fields["revision"] = revision.strip("_") or None
    return fields


def parse_disk_enum(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the disks listed in Services\\disk\\Enum ("Count", then "0", "1", ...)."""
    disks = []
    for index in range(int(values.get("Count", 0))):
        instance = values.get(str(index))
        if not instance:
            continue
        fields = parse_disk_instance(str(instance))
        disks.append(
            {
                "name": f"disk{index}",
                "size_bytes": None,
                "model": fields["model"],
                "vendor": fields["vendor"],
                "serial": None,
                "firmware": fields["revision"],
                "rotational": None,
                "removable": str(instance).upper().startswith("USBSTOR"),
            }
        )
    return disks


def read_cpu(reg: WinregModule) -> dict[str, str | None]:
    """Read the processor's model and vendor."""
    values = read_values(reg, reg.HKEY_LOCAL_MACHINE, CPU_KEY) or {}
    model = values.get("ProcessorNameString")
    vendor = values.get("VendorIdentifier")
    return {
        "model": str(model).strip() if model else None,
        "vendor": str(vendor).strip() if vendor else None,
    }


def read_system(reg: WinregModule) -> dict[str, str | None]:
    """Read the firmware's vendor, model and BIOS strings."""
    values = read_values(reg, reg.HKEY_LOCAL_MACHINE, BIOS_KEY) or {}
    result: dict[str, str | None] = {
        field: (str(values[key]).strip() or None) if values.get(key) else None
        for key, field in BIOS_FIELDS.items()
    }
    result["serial"] = None
    return result


def read_disks(reg: WinregModule) -> list[dict[str, Any]]:
    """Read the disks Windows has enumerated."""
    return parse_disk_enum(read_values(reg, reg.HKEY_LOCAL_MACHINE, DISK_ENUM_KEY) or {})
