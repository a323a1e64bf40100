"""Read OS identity, firmware strings and pending reboots on Windows from the registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rmm_agent.collectors._winreg import WinregModule, last_write_time, read_values

CURRENT_VERSION_KEY = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion"
BIOS_KEY = r"HARDWARE\DESCRIPTION\System\BIOS"
# Keys Windows Update and Component Based Servicing create while a reboot is pending.
# PendingFileRenameOperations is left out: installers set it for days without needing a reboot.
REBOOT_KEYS = (
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired",
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending",
)
FIRST_WINDOWS_11_BUILD = 22000


def parse_current_version(values: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """Return (name, version, release) from the CurrentVersion key's values."""
    name = str(values.get("ProductName") or "Windows")
    build = str(values.get("CurrentBuildNumber") or values.get("CurrentBuild") or "")
    # Windows 11 still says "Windows 10" in ProductName; its builds start at 22000.
    if build.isdigit() and int(build) >= FIRST_WINDOWS_11_BUILD and name.startswith("Windows 10"):
        name = "Windows 11" + name[len("Windows 10") :]
    major, minor = values.get("CurrentMajorVersionNumber"), values.get("CurrentMinorVersionNumber")
    # Windows 7 and 8 have no Major/Minor numbers, only CurrentVersion ("6.1").
    base = f"{major}.{minor}" if major is not None else str(values.get("CurrentVersion", ""))
    version = f"{base}.{build}" if build else base
    if values.get("UBR") is not None:
        version += f".{values['UBR']}"
    release = values.get("DisplayVersion") or values.get("ReleaseId")
    return name, version, str(release) if release else None


def read_os_identity(reg: WinregModule) -> tuple[str, str, str | None]:
    """Read Windows' product name, version and feature release."""
    return parse_current_version(
        read_values(reg, reg.HKEY_LOCAL_MACHINE, CURRENT_VERSION_KEY) or {}
    )


def read_firmware_strings(reg: WinregModule) -> list[str]:
    """Read the SMBIOS manufacturer and product strings Windows copies into the registry."""
    values = read_values(reg, reg.HKEY_LOCAL_MACHINE, BIOS_KEY) or {}
    keys = ("SystemProductName", "SystemManufacturer", "BaseBoardManufacturer", "BIOSVendor")
    return [str(values[k]) for k in keys if values.get(k)]


def read_reboot_pending(reg: WinregModule) -> float | None:
    """Return since when a reboot has been pending (Unix time), or None if none is."""
    times = [
        t
        for key in REBOOT_KEYS
        if (t := last_write_time(reg, reg.HKEY_LOCAL_MACHINE, key)) is not None
    ]
    return min(times) if times else None
