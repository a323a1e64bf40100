"""List installed Windows programs from the registry's Uninstall keys."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from typing import Any

from rmm_agent.collectors._packages import Package, sort_packages
from rmm_agent.collectors._winreg import (
    WinregModule,
    last_write_time,
    list_subkeys,
    load_winreg,
    read_values,
)

UNINSTALL_KEY = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall"
# Updates and hotfixes register under Uninstall too; they are patches, not programs.
UPDATE_RELEASE_TYPES = frozenset({"Security Update", "Update Rollup", "Hotfix", "Update"})


def parse_uninstall_entry(values: Mapping[str, Any], arch: str | None) -> Package | None:
    """Return the program an Uninstall subkey describes, or None if it is not one to list."""
    name = str(values.get("DisplayName") or "").strip()
    if not name:
        return None  # no name: a component registration Programs and Features hides too
    if values.get("SystemComponent") == 1 or values.get("ParentKeyName"):
        return None  # parts of another product, hidden from Programs and Features
    if values.get("ReleaseType") in UPDATE_RELEASE_TYPES:
        return None
    return Package(name, str(values.get("DisplayVersion") or "").strip(), arch)


class WindowsRegistryBackend:
    """Read installed programs as Programs and Features lists them."""

    name = "windows-registry"

    def __init__(
        self,
        *,
        winreg_module: WinregModule | None = None,
        is_64bit_os: bool | None = None,
    ) -> None:
        self._winreg = winreg_module
        self._is_64bit = platform.machine().endswith("64") if is_64bit_os is None else is_64bit_os

    def _reg(self) -> WinregModule:
        """Return the winreg module given, or the real one."""
        if self._winreg is None:
            self._winreg = load_winreg()
        return self._winreg

    def _sources(self) -> list[tuple[int, int, str | None]]:
        """Return (hive, registry view, arch) of each Uninstall key to read."""
        reg = self._reg()
        sources: list[tuple[int, int, str | None]] = []
        if self._is_64bit:
            # The 64-bit view holds 64-bit programs, the 32-bit view (WOW6432Node) the others.
            sources.append((reg.HKEY_LOCAL_MACHINE, reg.KEY_WOW64_64KEY, "x64"))
            sources.append((reg.HKEY_LOCAL_MACHINE, reg.KEY_WOW64_32KEY, "x86"))
        else:
            sources.append((reg.HKEY_LOCAL_MACHINE, 0, "x86"))
        # Per-user installs (of the account the agent runs as) carry no architecture.
        sources.append((reg.HKEY_CURRENT_USER, 0, None))
        return sources

    def available(self) -> bool:
        """Tell whether the registry can be read (always on Windows)."""
        try:
            self._reg()
        except ImportError:
            return False
        return True

    def stamp(self) -> object:
        """Return every Uninstall subkey's last write time: any install or upgrade changes one."""
        reg = self._reg()
        stamp = []
        for hive, view, _arch in self._sources():
            for sub in list_subkeys(reg, hive, UNINSTALL_KEY, view) or []:
                path = f"{UNINSTALL_KEY}\\{sub}"
                stamp.append((hive, view, sub, last_write_time(reg, hive, path, view)))
        return tuple(stamp)

    def read_packages(self) -> list[Package]:
        """Read every Uninstall subkey of every view."""
        reg = self._reg()
        packages: set[Package] = set()
        for hive, view, arch in self._sources():
            for sub in list_subkeys(reg, hive, UNINSTALL_KEY, view) or []:
                values = read_values(reg, hive, f"{UNINSTALL_KEY}\\{sub}", view)
                package = parse_uninstall_entry(values or {}, arch)
                if package is not None:
                    packages.add(package)
        return sort_packages(packages)
