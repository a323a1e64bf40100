"""Patch backends: one module per package manager, registered in BACKENDS.

Each backend says whether it applies to this host (`available()`), lists pending updates
without downloading (`read_updates()`) and installs a list of them, checking each against a
rescan (`install()`). The patches collector and the install_updates action use them.
"""

from __future__ import annotations

from rmm_agent.patching.apt import AptBackend
from rmm_agent.patching.base import (
    CLASSIFICATIONS,
    INSTALL_STATUSES,
    CommandBackend,
    InstallOutcome,
    PatchBackend,
    PendingUpdate,
    ProcessRunner,
    UpdateSource,
    run_process,
)
from rmm_agent.patching.chocolatey import ChocolateyBackend
from rmm_agent.patching.dnf import DnfBackend
from rmm_agent.patching.flatpak import FlatpakBackend
from rmm_agent.patching.fwupd import FwupdBackend
from rmm_agent.patching.homebrew import HomebrewBackend
from rmm_agent.patching.pnputil import PnputilBackend
from rmm_agent.patching.snap import SnapBackend
from rmm_agent.patching.softwareupdate import SoftwareUpdateBackend
from rmm_agent.patching.ubuntu_drivers import UbuntuDriversBackend
from rmm_agent.patching.windows_update import WindowsUpdateBackend
from rmm_agent.patching.winget import WingetBackend
from rmm_agent.patching.zypper import ZypperBackend

__all__ = [
    "BACKENDS",
    "CLASSIFICATIONS",
    "INSTALL_STATUSES",
    "CommandBackend",
    "InstallOutcome",
    "PatchBackend",
    "PendingUpdate",
    "ProcessRunner",
    "UpdateSource",
    "default_backends",
    "run_process",
]

# Every backend by its registry name, in order of preference within an OS: the OS's own
# updates first, then third-party software, then drivers and firmware.
BACKENDS: dict[str, type[CommandBackend]] = {
    "apt": AptBackend,
    "dnf": DnfBackend,
    "zypper": ZypperBackend,
    "windows-update": WindowsUpdateBackend,
    "softwareupdate": SoftwareUpdateBackend,
    "winget": WingetBackend,
    "chocolatey": ChocolateyBackend,
    "homebrew": HomebrewBackend,
    "flatpak": FlatpakBackend,
    "snap": SnapBackend,
    "ubuntu-drivers": UbuntuDriversBackend,
    "fwupd": FwupdBackend,
    "pnputil": PnputilBackend,
}


def default_backends(platform: str, runner: ProcessRunner) -> tuple[PatchBackend, ...]:
    """Return a backend of each kind that runs on `platform`, in order of preference."""
    return tuple(
        cls(runner=runner)
        for cls in BACKENDS.values()
        if any(platform.startswith(prefix) for prefix in cls.platforms)
    )
