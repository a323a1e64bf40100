"""An operator's Windows driver package (.inf), added to the driver store with pnputil.

pnputil offers no pending updates of its own: the server pushes the package's files (push_file)
and asks install_updates for "pnputil:<absolute path of the .inf>". The driver store keeps the
previous package, so `delete_driver_argv` of the new one rolls back to it where Windows can.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PureWindowsPath

from rmm_agent.patching.base import (
    DRIVER,
    FAILED,
    INSTALLED,
    SKIPPED,
    CommandBackend,
    InstallOutcome,
    PatchError,
    PendingUpdate,
    ProcessTimedOut,
    ProgramMissing,
    tail,
)

NAME = "pnputil"
PNPUTIL = "pnputil.exe"
ENUM_DRIVERS = (PNPUTIL, "/enum-drivers")
# Windows' ERROR_SUCCESS_REBOOT_REQUIRED; ERROR_NO_MORE_ITEMS: added, but no device matched.
EXIT_REBOOT_REQUIRED = 3010
EXIT_NO_MATCHING_DEVICE = 259
FIELD_RE = re.compile(r"^(?P<key>[A-Za-z ]+):\s+(?P<value>.*?)\s*$")


def add_driver_argv(inf: str) -> list[str]:
    """Return the command line that adds `inf` to the driver store and installs it."""
    return [PNPUTIL, "/add-driver", inf, "/install"]


def delete_driver_argv(published_name: str) -> list[str]:
    """Return the command line that removes a published package (oemNN.inf), for a rollback."""
    return [PNPUTIL, "/delete-driver", published_name, "/uninstall"]


def parse_records(text: str) -> list[dict[str, str]]:
    """Parse pnputil's "Key: value" blocks (separated by blank lines) into dicts."""
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                records.append(current)
            current = {}
        elif match := FIELD_RE.match(line):
            current[match["key"].strip()] = match["value"]
    if current:
        records.append(current)
    return records


def parse_enum_drivers(text: str) -> dict[str, dict[str, str]]:
    """Parse `pnputil /enum-drivers` into each package's fields by its published name."""
    return {r["Published Name"].lower(): r for r in parse_records(text) if "Published Name" in r}


def parse_add_driver(text: str) -> tuple[str | None, str | None]:
    """Return (published name, pnputil's failure message) of `pnputil /add-driver`."""
    published = None
    failure = None
    for line in text.splitlines():
        if (match := FIELD_RE.match(line)) and match["key"].strip() == "Published Name":
            published = match["value"]
        elif line.strip().startswith("Failed to"):
            failure = line.strip()
    return published, failure


def inf_path(uid: str) -> str | None:
    """Return the .inf path an id names, or None when it is not an absolute .inf path."""
    path = uid.split(":", 1)[1] if uid.startswith(f"{NAME}:") else ""
    windows = PureWindowsPath(path)
    return path if windows.is_absolute() and windows.suffix.lower() == ".inf" else None


class PnputilBackend(CommandBackend):
    """Install a driver package an operator pushed, and check the driver store took it."""

    name = NAME
    classifications = (DRIVER,)
    program = PNPUTIL
    platforms = ("win",)

    def read_updates(self) -> list[PendingUpdate]:
        """Return nothing: pnputil installs what it is given, it has no catalog."""
        return []

    def install(self, ids: Sequence[str], timeout: float) -> list[InstallOutcome]:
        """Add each package to the driver store, then find it in `pnputil /enum-drivers`."""
        deadline = self._clock() + timeout
        return [self._install_one(uid, deadline) for uid in dict.fromkeys(ids)]

    def _install_one(self, uid: str, deadline: float) -> InstallOutcome:
        """Add one driver package and verify it."""
        inf = inf_path(uid)
        if inf is None:
            message = f"{uid!r} does not name an absolute .inf path (pnputil:C:\\...\\driver.inf)"
            return InstallOutcome(uid, SKIPPED, message)
        try:
            rc, out, err = self._runner(add_driver_argv(inf), max(1.0, deadline - self._clock()))
        except (ProcessTimedOut, ProgramMissing) as exc:
            return InstallOutcome(uid, FAILED, str(exc))
        published, failure = parse_add_driver(out)
        if rc not in (0, EXIT_REBOOT_REQUIRED, EXIT_NO_MATCHING_DEVICE) or published is None:
            said = failure or tail(err or out, 300)
            return InstallOutcome(uid, FAILED, f"pnputil /add-driver {inf}: exited {rc}: {said}")
        try:
            store = parse_enum_drivers(self.query(ENUM_DRIVERS, 120.0))
        except PatchError as exc:
            return InstallOutcome(uid, FAILED, f"added as {published}, unverified: {exc}")
        entry = store.get(published.lower())
        if entry is None:
            return InstallOutcome(
                uid, FAILED, f"pnputil reported {published} but the driver store lacks it"
            )
        note = "" if rc != EXIT_NO_MATCHING_DEVICE else "added; no device matches it yet"
        return InstallOutcome(
            uid, INSTALLED, note, entry.get("Driver Version"), rc == EXIT_REBOOT_REQUIRED
        )
