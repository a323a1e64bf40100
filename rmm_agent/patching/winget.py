"""Third-party Windows software: upgrades listed and installed with winget."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rmm_agent.patching.base import (
    THIRD_PARTY,
    CommandBackend,
    InstallStep,
    PendingUpdate,
    sort_updates,
    update_id,
)

NAME = "winget"
AGREE = ("--accept-source-agreements", "--disable-interactivity")
LIST_UPGRADES = ("winget", "upgrade", "--include-unknown", *AGREE)
# One package per run: winget upgrades one query at a time. --exact --id: no fuzzy match.
UPGRADE = ("winget", "upgrade", "--exact", "--silent", "--accept-package-agreements", *AGREE)
# winget's own failure codes (APPINSTALLER_CLI_ERROR_*), as the unsigned exit status.
EXIT_CODES = {
    0x8A150011: "no applicable update found",
    0x8A150014: "no packages found matching the input",
    0x8A15002B: "no applicable upgrade (the installed version is current)",
    0x8A150101: "the application is running: close it and try again",
    0x8A150102: "another installation is already in progress",
    0x8A150103: "a file is in use by another application",
    0x8A150104: "a dependency is missing",
    0x8A150105: "the disk is full",
    0x8A150106: "not enough memory",
    0x8A150107: "no network connection",
    0x8A150109: "a restart is needed to finish the installation",
    0x8A15010A: "a restart is needed before installing",
}
INSTALL_IN_PROGRESS = 0x8A150102
# Table rows stop at these lines.
FOOTER_RE = re.compile(r"^\d+ (upgrades? available|package\(s\))|No installed package")


def clean_lines(text: str) -> list[str]:
    """Return the output's lines without winget's progress spinner (written with \\r)."""
    return [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]


def header_columns(line: str) -> dict[str, int] | None:
    """Return the start of each column of a "Name Id Version Available Source" header."""
    names = ("Name", "Id", "Version", "Available", "Source")
    found = {name: m.start() for name in names if (m := re.search(rf"\b{name}\b", line))}
    return found if all(n in found for n in names[:4]) and found["Name"] == 0 else None


def parse_table_row(line: str, columns: dict[str, int]) -> PendingUpdate | None:
    """Return one table row as an update, or None for a line that is not one."""
    ends = sorted(columns.values())

    def cell(name: str) -> str:
        start = columns[name]
        later = [e for e in ends if e > start]
        return line[start : later[0] if later else None].strip()

    package_id, available = cell("Id"), cell("Available")
    if not package_id or not available or " " in package_id:
        return None
    current = cell("Version")
    return PendingUpdate(
        id=update_id(NAME, package_id),
        name=cell("Name") or package_id,
        current=None if current in ("", "Unknown") else current.lstrip("< "),
        available=available,
        classification=THIRD_PARTY,
        backend=NAME,
        source=cell("Source") if "Source" in columns else "",
    )


def parse_upgrade_list(text: str) -> list[PendingUpdate]:
    """Parse `winget upgrade`'s tables (pinned "explicit targeting" packages are left out)."""
    updates = []
    columns: dict[str, int] | None = None
    for line in clean_lines(text):
        if "explicit targeting" in line:
            break  # pinned packages follow: `winget upgrade --all` skips them, so do we
        if (found := header_columns(line)) is not None:
            columns = found
            continue
        if columns is None or not line.strip() or set(line.strip()) == {"-"}:
            continue
        if FOOTER_RE.search(line):
            columns = None
            continue
        if (update := parse_table_row(line, columns)) is not None:
            updates.append(update)
    return sort_updates(updates)


class WingetBackend(CommandBackend):
    """List and install upgrades of software winget knows (its own source and msstore)."""

    name = NAME
    classifications = (THIRD_PARTY,)
    program = "winget"
    platforms = ("win",)
    lock_exit_codes = frozenset({INSTALL_IN_PROGRESS})

    def read_updates(self) -> list[PendingUpdate]:
        """List the upgrades winget offers (its exit status is 0 with or without any)."""
        return parse_upgrade_list(self.query(LIST_UPGRADES))

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one `winget upgrade --id ID --version V` per update."""
        return [
            InstallStep([*UPGRADE, "--id", u.id.split(":", 1)[1], "--version", u.available], [u])
            for u in updates
        ]

    def exit_meaning(self, rc: int) -> str:
        """Return what a winget exit status means."""
        return EXIT_CODES.get(rc & 0xFFFFFFFF, "")
