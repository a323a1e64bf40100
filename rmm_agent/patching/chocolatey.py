"""Third-party Windows software: upgrades listed and installed with Chocolatey."""

from __future__ import annotations

from collections.abc import Sequence

from rmm_agent.patching.base import (
    THIRD_PARTY,
    CommandBackend,
    InstallStep,
    PendingUpdate,
    sort_updates,
    update_id,
)

NAME = "chocolatey"
# --limit-output (-r): "name|current|available|pinned" lines, nothing else.
OUTDATED = ("choco", "outdated", "--limit-output", "--no-color")
# One package per run, pinned to the version scanned; --no-progress keeps the output short.
UPGRADE = ("choco", "upgrade", "--yes", "--no-progress", "--limit-output", "--no-color")
# Windows Installer's ERROR_INSTALL_ALREADY_RUNNING, passed through by choco.
INSTALL_ALREADY_RUNNING = 1618
EXIT_CODES = {
    1: "the install failed",
    350: "a reboot is pending: Chocolatey will not install until the host restarts",
    1604: "the install was suspended for a pending reboot",
    1618: "another installation is already in progress",
    1641: "the installer started a reboot",
    3010: "installed; a reboot is needed to finish",
}


def parse_outdated(text: str) -> list[PendingUpdate]:
    """Parse `choco outdated --limit-output` (pinned packages are left out: choco skips them)."""
    updates = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4 or not fields[0] or fields[3].lower() == "true":
            continue
        name, current, available, _pinned = fields
        updates.append(
            PendingUpdate(
                id=update_id(NAME, name),
                name=name,
                current=current or None,
                available=available,
                classification=THIRD_PARTY,
                backend=NAME,
                source="chocolatey",
            )
        )
    return sort_updates(updates)


class ChocolateyBackend(CommandBackend):
    """List and install upgrades of packages Chocolatey installed."""

    name = NAME
    classifications = (THIRD_PARTY,)
    program = "choco"
    platforms = ("win",)
    lock_exit_codes = frozenset({INSTALL_ALREADY_RUNNING})

    def read_updates(self) -> list[PendingUpdate]:
        """Ask choco which installed packages have a newer version in their sources."""
        return parse_outdated(self.query(OUTDATED))

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one `choco upgrade NAME --version V` per update."""
        return [InstallStep([*UPGRADE, u.name, "--version", u.available], [u]) for u in updates]

    def exit_meaning(self, rc: int) -> str:
        """Return what a choco exit status means."""
        return EXIT_CODES.get(rc, "")
