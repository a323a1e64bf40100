"""Linux snaps: pending refreshes listed and applied with snap."""

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

NAME = "snap"
REFRESH_LIST = ("snap", "refresh", "--list")
SNAP_LIST = ("snap", "list")
REFRESH = ("snap", "refresh")
SIZE_RE = re.compile(r"^(?P<number>[\d.]+)(?P<unit>[kMGT]?B)$")
# snapd's strutil.SizeToStr: decimal units.
SIZE_UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
# 'error: snap "firefox" has "refresh-snap" change in progress'
LOCK_RE = re.compile(r'has "[^"]+" change in progress|change in progress')
# 'error: cannot refresh "firefox": snap "firefox" has running apps (firefox)'
ERROR_RE = re.compile(r'^error: cannot refresh "(?P<name>[^"]+)": (?P<why>.+)$', re.MULTILINE)


def parse_table(text: str) -> list[dict[str, str]]:
    """Parse one of snap's tables (header, then rows of space-aligned columns) by header."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    return [dict(zip(header, line.split(), strict=False)) for line in lines[1:]]


def parse_size(text: str) -> int | None:
    """Return snap's "275MB" as bytes, or None."""
    match = SIZE_RE.match(text)
    return int(float(match["number"]) * SIZE_UNITS[match["unit"]]) if match else None


def parse_refresh_list(listed: str, installed: str) -> list[PendingUpdate]:
    """Join `snap refresh --list` with `snap list` on the snap's name."""
    versions = {row["Name"]: row.get("Version", "") for row in parse_table(installed)}
    updates = []
    for row in parse_table(listed):
        name = row.get("Name", "")
        if not name:
            continue
        updates.append(
            PendingUpdate(
                id=update_id(NAME, name),
                name=name,
                current=versions.get(name) or None,
                available=row.get("Version", ""),
                classification=THIRD_PARTY,
                backend=NAME,
                source=row.get("Publisher", "").rstrip("✓*"),
                size_bytes=parse_size(row.get("Size", "")),
            )
        )
    return sort_updates(updates)


class SnapBackend(CommandBackend):
    """List and apply pending snap refreshes."""

    name = NAME
    classifications = (THIRD_PARTY,)
    program = "snap"

    def read_updates(self) -> list[PendingUpdate]:
        """Ask snapd for pending refreshes ("All snaps up to date." goes to stderr)."""
        return parse_refresh_list(self.query(REFRESH_LIST), self.query(SNAP_LIST))

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one `snap refresh NAME...` of every snap."""
        return [InstallStep([*REFRESH, *(u.name for u in updates)], list(updates))]

    def is_lock_message(self, text: str) -> bool:
        """Tell whether snapd said another change of the snap is in progress."""
        return LOCK_RE.search(text) is not None

    def failure_messages(self, step: InstallStep, stdout: str, stderr: str) -> dict[str, str]:
        """Return snap's "cannot refresh" error per snap it names."""
        said = {m["name"]: m[0] for m in ERROR_RE.finditer(stderr)}
        return {u.id: said[u.name] for u in step.updates if u.name in said}
