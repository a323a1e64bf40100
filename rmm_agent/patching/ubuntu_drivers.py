"""Ubuntu's recommended hardware drivers (NVIDIA, Broadcom...): listed by ubuntu-drivers."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rmm_agent.patching.apt import APT_INSTALL, DPKG_QUERY, INSTALL_ENV, LOCK_RE, parse_dpkg_query
from rmm_agent.patching.base import (
    DRIVER,
    CommandBackend,
    InstallStep,
    PendingUpdate,
    sort_updates,
    update_id,
)

NAME = "ubuntu-drivers"
DEVICES = ("ubuntu-drivers", "devices")
# "driver   : nvidia-driver-535 - distro non-free recommended"
DRIVER_RE = re.compile(r"^driver\s*:\s*(?P<package>\S+)\s+-\s+(?P<notes>.*)$")
DEVICE_RE = re.compile(r"^==\s*(?P<path>.+?)\s*==$")
FIELD_RE = re.compile(r"^(?P<key>vendor|model)\s*:\s*(?P<value>.*)$")


def parse_devices(text: str) -> list[tuple[str, str, str]]:
    """Return (package, device model, notes) of each device's recommended driver."""
    found = []
    model = vendor = ""
    for raw in text.splitlines():
        line = raw.strip()
        if DEVICE_RE.match(line):
            model = vendor = ""
        elif field := FIELD_RE.match(line):
            if field["key"] == "model":
                model = field["value"]
            else:
                vendor = field["value"]
        elif (driver := DRIVER_RE.match(line)) and "recommended" in driver["notes"].split():
            described = " ".join(part for part in (vendor, model) if part)
            found.append((driver["package"], described, driver["notes"]))
    return found


def pending_drivers(
    recommended: list[tuple[str, str, str]], installed: dict[str, str]
) -> list[PendingUpdate]:
    """Return the recommended drivers that are not installed yet."""
    updates = []
    for package, device, notes in recommended:
        if package in installed:
            continue
        updates.append(
            PendingUpdate(
                id=update_id(NAME, package),
                name=f"{package} ({device})" if device else package,
                current=None,
                available=package,
                classification=DRIVER,
                backend=NAME,
                source=notes,
                reboot_required=True,  # a kernel module replaces the one loaded
            )
        )
    return sort_updates(updates)


class UbuntuDriversBackend(CommandBackend):
    """Offer each device's recommended driver package that is not installed, via apt."""

    name = NAME
    classifications = (DRIVER,)
    program = "ubuntu-drivers"

    def read_updates(self) -> list[PendingUpdate]:
        """Ask ubuntu-drivers for recommended drivers; dpkg-query for the installed ones."""
        recommended = parse_devices(self.query(DEVICES))
        if not recommended:
            return []
        # dpkg-query exits 1 when one of the names is not installed: the rest still print.
        _rc, out, _err = self._runner([*DPKG_QUERY, *(p for p, _d, _n in recommended)], 60.0)
        return pending_drivers(recommended, parse_dpkg_query(out))

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one apt-get install of the driver packages (as ubuntu-drivers does)."""
        argv = [*INSTALL_ENV, *(a for a in APT_INSTALL if a != "--only-upgrade")]
        return [InstallStep([*argv, *(u.available for u in updates)], list(updates))]

    def is_lock_message(self, text: str) -> bool:
        """Tell whether apt said another process holds dpkg's lock."""
        return LOCK_RE.search(text) is not None
