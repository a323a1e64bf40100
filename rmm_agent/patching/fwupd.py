"""Linux firmware: updates listed and installed with fwupd's fwupdmgr (LVFS)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rmm_agent.patching.base import (
    FIRMWARE,
    CommandBackend,
    InstallStep,
    PatchError,
    PendingUpdate,
    sort_updates,
    update_id,
)

NAME = "fwupd"
# Reads the metadata fwupd already has (refresh is the patch job's business): no download.
GET_UPDATES = ("fwupdmgr", "get-updates", "--json", "--no-unreported-check")
# One device per run; no questions, no reboot (a capsule update waits for the next boot).
UPDATE = (
    "fwupdmgr", "update", "--assume-yes", "--no-reboot-check", "--no-unreported-check",
    "--no-metadata-check",
)  # fmt: skip
# fwupdmgr's exit status for "nothing to do" (no updatable devices, no updates).
EXIT_NOTHING_TO_DO = 2
REBOOT_FLAGS = {"needs-reboot", "needs-shutdown"}
# A UEFI capsule is staged and flashed by the firmware at the next boot.
REBOOT_PLUGINS = {"uefi_capsule", "uefi_dbx"}


def release_update(device: Mapping[str, Any], release: Mapping[str, Any]) -> PendingUpdate:
    """Return the update of `device` to `release`."""
    flags = set(device.get("Flags") or [])
    created, size = release.get("Created"), release.get("Size")
    return PendingUpdate(
        id=update_id(NAME, str(device.get("DeviceId", ""))),
        name=str(device.get("Name") or device.get("DeviceId") or "?"),
        current=str(device["Version"]) if device.get("Version") else None,
        available=str(release.get("Version", "")),
        classification=FIRMWARE,
        backend=NAME,
        source=str(release.get("RemoteId") or ""),
        # Older fwupd writes the LVFS urgency (low, medium, high, critical); a CVE says more.
        severity=str(release.get("Urgency") or ("security" if release.get("Issues") else "")),
        published=float(created) if created else None,
        size_bytes=int(size) if size else None,
        reboot_required=bool(flags & REBOOT_FLAGS) or device.get("Plugin") in REBOOT_PLUGINS,
        hardware_ids=tuple(str(guid) for guid in device.get("Guid") or ()),
    )


def parse_get_updates(text: str) -> list[PendingUpdate]:
    """Parse `fwupdmgr get-updates --json`: each device's newest release (listed first)."""
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise PatchError(f"fwupdmgr get-updates printed no JSON ({exc}): {text[:200]!r}") from exc
    updates = []
    for device in data.get("Devices") or []:
        releases = [
            r for r in device.get("Releases") or [] if "is-downgrade" not in (r.get("Flags") or [])
        ]
        if device.get("DeviceId") and releases:
            updates.append(release_update(device, releases[0]))
    return sort_updates(updates)


class FwupdBackend(CommandBackend):
    """List and install firmware updates the LVFS offers for this machine's devices."""

    name = NAME
    classifications = (FIRMWARE,)
    program = "fwupdmgr"

    def read_updates(self) -> list[PendingUpdate]:
        """Ask fwupd which devices have a newer firmware release."""
        rc, out, err = self._runner(GET_UPDATES, 120.0)
        if rc == EXIT_NOTHING_TO_DO:
            return []  # "No updatable devices" / "No updates available"
        if rc != 0:
            raise PatchError(f"{' '.join(GET_UPDATES)}: exited {rc}: {err.strip()[:300]}")
        return parse_get_updates(out)

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one `fwupdmgr update DEVICE-ID` per device."""
        return [InstallStep([*UPDATE, u.id.split(":", 1)[1]], [u]) for u in updates]

    def exit_meaning(self, rc: int) -> str:
        """Return what a fwupdmgr exit status means."""
        return "nothing to do: the device is current" if rc == EXIT_NOTHING_TO_DO else ""
