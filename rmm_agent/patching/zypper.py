"""SUSE and openSUSE updates: listed and installed with zypper."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

from rmm_agent.patching._rpm import (
    RPM_LOCKS,
    RPM_QUERY,
    installed_after,
    parse_rpm_versions,
    read_rpm_lock_holder,
)
from rmm_agent.patching.base import (
    BUGFIX,
    PACKAGE_CLASSIFICATIONS,
    Clock,
    CommandBackend,
    InstallStep,
    PatchError,
    PendingUpdate,
    ProcessRunner,
    Which,
    run_process,
    sort_updates,
    update_id,
)
from rmm_agent.patching.dnf import read_pid_lock

NAME = "zypper"
# --no-refresh: the lists as they are (refreshing is the patch job's business); --xmlout: the
# machine-readable form, not the translated table.
LIST_UPDATES = (
    "zypper", "--non-interactive", "--no-refresh", "--xmlout", "list-updates", "--type", "package",
)  # fmt: skip
INSTALL = (
    "zypper", "--non-interactive", "--no-refresh", "install",
    "--auto-agree-with-licenses", "--no-recommends",
)  # fmt: skip
# libzypp's lock: the pid of the process that holds it.
ZYPP_PID_LOCK = Path("/run/zypp.pid")
# ZYPPER_EXIT_ZYPP_LOCKED; "System management is locked by the application with pid 1234".
EXIT_LOCKED = 7
LOCK_RE = re.compile(r"System management is locked")
KERNEL_RE = re.compile(r"^kernel-(default|azure|rt|64kb|preempt)$")


def parse_list_updates(text: str) -> list[PendingUpdate]:
    """Parse `zypper --xmlout list-updates` (package updates; patches are left out)."""
    # Imported here: every agent loads this backend with the registry, only SUSE hosts parse
    # its XML (ElementTree is ~0.3 MB resident in an agent that never needs it).
    import xml.etree.ElementTree as ET  # noqa: PLC0415

    start = text.find("<stream")
    if start < 0:
        raise PatchError(f"zypper list-updates printed no XML stream: {text.strip()[:200]!r}")
    try:
        root = ET.fromstring(text[start:])
    except ET.ParseError as exc:
        raise PatchError(f"zypper list-updates printed malformed XML: {exc}") from exc
    updates = []
    for item in root.iter("update"):
        if item.get("kind", "package") != "package":
            continue
        name, arch = item.get("name", ""), item.get("arch", "")
        key = f"{name}.{arch}" if arch else name
        source = item.find("source")
        updates.append(
            PendingUpdate(
                id=update_id(NAME, key),
                name=key,
                current=item.get("edition-old") or None,
                available=item.get("edition", ""),
                # list-updates does not say which patch (and so which category) fixes it.
                classification=BUGFIX,
                backend=NAME,
                source=source.get("alias", "") if source is not None else "",
                reboot_required=KERNEL_RE.match(name) is not None,
            )
        )
    return sort_updates(updates)


class ZypperBackend(CommandBackend):
    """Read pending package updates from zypper's cached repositories, and install them."""

    name = NAME
    classifications = PACKAGE_CLASSIFICATIONS
    program = "zypper"

    def __init__(
        self,
        *,
        runner: ProcessRunner = run_process,
        locks: Sequence[Path] = RPM_LOCKS,
        pid_lock: Path = ZYPP_PID_LOCK,
        which: Which | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(runner=runner, which=which, clock=clock)
        self._locks = locks
        self._pid_lock = pid_lock

    def read_updates(self) -> list[PendingUpdate]:
        """List the package updates zypper would install."""
        return parse_list_updates(self.query(LIST_UPDATES))

    def lock_holder(self) -> str | None:
        """Say whether another zypper (or an rpm transaction) holds the lock."""
        return read_pid_lock(self._pid_lock) or read_rpm_lock_holder(self._locks)

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one zypper install of every package at the edition scanned."""
        targets = [f"{u.name}={u.available}" for u in updates]
        return [InstallStep([*INSTALL, *targets], list(updates))]

    def is_lock_message(self, text: str) -> bool:
        """Tell whether zypper said that another application holds the lock."""
        return LOCK_RE.search(text) is not None

    def installed_versions(self, updates: Sequence[PendingUpdate]) -> dict[str, str | None]:
        """Read the installed versions with rpm."""
        return installed_after(updates, parse_rpm_versions(self.query(RPM_QUERY)))
