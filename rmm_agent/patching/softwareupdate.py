"""macOS updates: listed and installed with softwareupdate."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from rmm_agent.patching.base import (
    BUGFIX,
    PACKAGE_CLASSIFICATIONS,
    SECURITY,
    Clock,
    CommandBackend,
    InstallStep,
    PendingUpdate,
    ProcessRunner,
    Which,
    run_process,
    sort_updates,
    update_id,
)

log = logging.getLogger(__name__)

SOFTWAREUPDATE_LIST = ("softwareupdate", "--list")
SOURCE = NAME = "softwareupdate"
# --no-scan: install what the last scan found (the ids the server saw), without a new one;
# --agree-to-license: macOS 11+ asks for it before a major upgrade, on a terminal nobody reads.
SOFTWAREUPDATE_INSTALL = ("softwareupdate", "--install", "--no-scan", "--agree-to-license")
# "Size: 1124608KiB" (10.15+) or "1124608K" (older).
SIZE_RE = re.compile(r"^(?P<number>\d+)\s*(?P<unit>KiB|K|MiB|M|GiB|G)?")
UNITS = {
    None: 1,
    "K": 1024,
    "KiB": 1024,
    "M": 1024**2,
    "MiB": 1024**2,
    "G": 1024**3,
    "GiB": 1024**3,
}
# Written by every successful check, scheduled or manual.
SOFTWAREUPDATE_PLIST = Path("/Library/Preferences/com.apple.SoftwareUpdate.plist")

# macOS 10.15+: "* Label: LABEL" then a tab-indented "Title: T, Version: V, Size: S, ..." line.
LABEL_RE = re.compile(r"^\s*\* Label: (?P<label>.+?)\s*$")
FIELD_RE = re.compile(r"(?P<key>[A-Za-z ]+): (?P<value>[^,]*)(?:,|$)")
# macOS 10.14 and older: "   * LABEL" then "\tTitle (Version), SizeK [recommended]".
OLD_LABEL_RE = re.compile(r"^\s+\* (?P<label>\S.*?)\s*$")
OLD_TITLE_RE = re.compile(r"^\t(?P<title>.+?) \((?P<version>[^)]*)\)")
# Apple marks no classification; these names are its security-only releases (Security
# Update 2024-001, Rapid Security Response, Background Security Improvement, XProtect).
SECURITY_RE = re.compile(r"security|xprotect", re.IGNORECASE)


def classify_title(title: str) -> str:
    """Return "security" for Apple's security-only releases, else "bugfix"."""
    return SECURITY if SECURITY_RE.search(title) else BUGFIX


def parse_size(text: str | None) -> int | None:
    """Return "1124608KiB" as bytes, or None."""
    match = SIZE_RE.match(text or "")
    return int(match["number"]) * UNITS[match["unit"]] if match else None


def new_update(label: str, title: str, version: str, **extra: object) -> PendingUpdate:
    """Return one softwareupdate update, its id built from the label --install takes."""
    return PendingUpdate(
        id=update_id(NAME, label),
        name=title,
        current=None,
        available=version,
        classification=classify_title(title),
        backend=NAME,
        source=SOURCE,
        **extra,  # type: ignore[arg-type]
    )


def parse_softwareupdate_list(text: str) -> list[PendingUpdate]:
    """Parse `softwareupdate --list` (both the 10.15+ and the older layouts)."""
    updates = []
    label: str | None = None
    for line in text.splitlines():
        if match := LABEL_RE.match(line):
            label = match["label"]
            continue
        if label is not None and "Title:" in line:
            fields = {m["key"].strip(): m["value"].strip() for m in FIELD_RE.finditer(line)}
            title = fields.get("Title") or label
            updates.append(
                new_update(
                    label,
                    title,
                    fields.get("Version", ""),
                    size_bytes=parse_size(fields.get("Size")),
                    reboot_required=fields.get("Action", "").lower() in ("restart", "shut down"),
                )
            )
            label = None
            continue
        if match := OLD_LABEL_RE.match(line):
            label = match["label"]
            continue
        if label is not None and (old := OLD_TITLE_RE.match(line)):
            updates.append(
                new_update(label, old["title"], old["version"], reboot_required="[restart]" in line)
            )
            label = None
    return sort_updates(updates)


class SoftwareUpdateBackend(CommandBackend):
    """Ask softwareupdate for the updates Apple's catalog offers this Mac, and install them."""

    name: str = NAME
    classifications: tuple[str, ...] = PACKAGE_CLASSIFICATIONS
    program: ClassVar[str] = "softwareupdate"
    platforms: ClassVar[tuple[str, ...]] = ("darwin",)

    def __init__(
        self,
        *,
        runner: ProcessRunner = run_process,
        plist: Path = SOFTWAREUPDATE_PLIST,
        which: Which | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(runner=runner, which=which, clock=clock)
        self._plist = plist

    def lists_updated_at(self) -> float | None:
        """Return LastSuccessfulDate from softwareupdate's preferences."""
        # Imported here, on macOS only: every other agent would hold it for nothing.
        import plistlib  # noqa: PLC0415

        try:
            with self._plist.open("rb") as f:
                when = plistlib.load(f).get("LastSuccessfulDate")
        except (OSError, plistlib.InvalidFileException) as exc:
            log.debug("cannot read %s: %s", self._plist, exc)
            return None
        if not isinstance(when, datetime):
            return None
        # plistlib returns naive datetimes that are in UTC.
        return when.replace(tzinfo=UTC).timestamp()

    def read_updates(self) -> list[PendingUpdate]:
        """Run softwareupdate --list ("No new software available." goes to stderr)."""
        return parse_softwareupdate_list(self.query(SOFTWAREUPDATE_LIST))

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one softwareupdate --install of every label."""
        labels = [u.id.split(":", 1)[1] for u in updates]
        return [InstallStep([*SOFTWAREUPDATE_INSTALL, *labels], list(updates))]
