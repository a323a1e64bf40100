"""List pending macOS updates with softwareupdate."""

from __future__ import annotations

import logging
import plistlib
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rmm_agent.collectors._patches import (
    OTHER,
    PACKAGE_CLASSIFICATIONS,
    SECURITY,
    PendingUpdate,
    sort_updates,
)
from rmm_agent.collectors.base import CommandRunner, run_command

log = logging.getLogger(__name__)

SOFTWAREUPDATE_LIST = ("softwareupdate", "--list")
SOURCE = "softwareupdate"
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
    """Return "security" for Apple's security-only releases, else "other"."""
    return SECURITY if SECURITY_RE.search(title) else OTHER


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
                PendingUpdate(title, None, fields.get("Version", ""), classify_title(title), SOURCE)
            )
            label = None
            continue
        if match := OLD_LABEL_RE.match(line):
            label = match["label"]
            continue
        if label is not None and (old := OLD_TITLE_RE.match(line)):
            title = old["title"]
            classification = classify_title(title)
            updates.append(PendingUpdate(title, None, old["version"], classification, SOURCE))
            label = None
    return sort_updates(updates)


class SoftwareUpdateBackend:
    """Ask softwareupdate for the updates Apple's catalog offers this Mac."""

    name = "softwareupdate"
    classifications: tuple[str, ...] = PACKAGE_CLASSIFICATIONS

    def __init__(
        self,
        *,
        runner: CommandRunner = run_command,
        plist: Path = SOFTWAREUPDATE_PLIST,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self._runner = runner
        self._plist = plist
        self._which = which

    def available(self) -> bool:
        """Tell whether softwareupdate is present."""
        return self._which("softwareupdate") is not None

    def stamp(self) -> object:
        """Return None: softwareupdate asks Apple's catalog, so only time tells of a change."""
        return None

    def lists_updated_at(self) -> float | None:
        """Return LastSuccessfulDate from softwareupdate's preferences."""
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
        return parse_softwareupdate_list(self._runner(SOFTWAREUPDATE_LIST))
