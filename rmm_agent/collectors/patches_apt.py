"""List pending Debian and Ubuntu updates by simulating an upgrade with apt-get."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from rmm_agent.collectors._patches import (
    OTHER,
    PACKAGE_CLASSIFICATIONS,
    SECURITY,
    PendingUpdate,
    sort_updates,
)
from rmm_agent.collectors.base import CommandRunner, run_command

# A simulation reads the lists `apt-get update` left behind: no download, no lock taken.
# dist-upgrade, not upgrade: it also counts updates that need a new dependency (kernels).
APT_SIMULATE = ("apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade")
APT_LISTS_DIR = Path("/var/lib/apt/lists")
DPKG_STATUS = Path("/var/lib/dpkg/status")

# apt's pkgSimulate prints "Inst NAME [CURRENT] (CANDIDATE RELEASES [ARCH])" and more
# bracketed notes after it; RELEASES is "Origin:Version/Archive" joined by ", ", and an
# Origin may hold spaces ("Google LLC:1.0/stable"). A new package has no [CURRENT].
INST_RE = re.compile(
    r"^Inst (?P<name>\S+)(?: \[(?P<current>[^\]]*)\])? "
    r"\((?P<available>\S+) (?P<releases>.*?) \[(?P<arch>[^\]]+)\]\)"
)


def classify_releases(releases: str) -> tuple[str, str]:
    """Return (classification, source) of an Inst line's releases.

    Debian says "Debian-Security:12/stable-security", Ubuntu "Ubuntu:22.04/jammy-security",
    Ubuntu Pro "UbuntuESM:22.04/jammy-infra-security": a release naming a -security suite
    means the candidate is a security fix, even when another pocket carries it too.
    """
    parts = [p.strip() for p in releases.split(", ") if p.strip()]
    for part in parts:
        if "-security" in part.lower():
            return SECURITY, part
    return OTHER, parts[0] if parts else ""


def parse_apt_simulation(text: str) -> list[PendingUpdate]:
    """Parse `apt-get -s dist-upgrade` output into the upgrades of installed packages."""
    updates = []
    for line in text.splitlines():
        match = INST_RE.match(line)
        if match is None or match["current"] is None:
            continue  # a Conf/Remv line, or a package newly pulled in rather than updated
        classification, source = classify_releases(match["releases"])
        current, available = match["current"], match["available"]
        updates.append(PendingUpdate(match["name"], current, available, classification, source))
    return sort_updates(updates)


def newest_mtime(paths: list[Path]) -> float | None:
    """Return the newest mtime among `paths` that exist, or None."""
    times = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times, default=None)


class AptBackend:
    """Read pending updates from apt's package lists and dpkg's status."""

    name = "apt"
    classifications: tuple[str, ...] = PACKAGE_CLASSIFICATIONS

    def __init__(
        self,
        *,
        runner: CommandRunner = run_command,
        lists_dir: Path = APT_LISTS_DIR,
        status_file: Path = DPKG_STATUS,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self._runner = runner
        self._lists_dir = lists_dir
        self._status_file = status_file
        self._which = which

    def available(self) -> bool:
        """Tell whether apt-get and dpkg's database are present."""
        return self._which("apt-get") is not None and self._status_file.is_file()

    def stamp(self) -> object:
        """Return the mtimes of the lists directory and dpkg's status file.

        `apt-get update` renames new lists into the directory (changing its mtime); dpkg
        rewrites its status file on every install or removal.
        """
        status = self._status_file.stat()
        lists = self._lists_dir.stat().st_mtime_ns if self._lists_dir.is_dir() else None
        return lists, status.st_mtime_ns, status.st_size

    def lists_updated_at(self) -> float | None:
        """Return when `apt-get update` last ran, as far as the lists directory shows.

        A list file's mtime is the server's Last-Modified, so an unchanged repository leaves
        it old; partial/ is where every update downloads, so its mtime is the last run.
        """
        if not self._lists_dir.is_dir():
            return None
        paths = [self._lists_dir, self._lists_dir / "partial"]
        paths += [p for p in self._lists_dir.iterdir() if p.is_file() and p.name != "lock"]
        return newest_mtime(paths)

    def read_updates(self) -> list[PendingUpdate]:
        """Simulate a dist-upgrade and list what it would upgrade."""
        return parse_apt_simulation(self._runner(APT_SIMULATE))
