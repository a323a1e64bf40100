"""List pending RHEL, Fedora and derivative updates from dnf's cached metadata."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from rmm_agent.collectors._common import StatusRunner, run_status
from rmm_agent.collectors._patches import (
    OTHER,
    PACKAGE_CLASSIFICATIONS,
    SECURITY,
    PendingUpdate,
    sort_updates,
)
from rmm_agent.collectors.base import CommandError, CommandRunner, run_command
from rmm_agent.collectors.software_rpm import RPM_DB_DIRS, RPM_FORMAT, parse_rpm_query

# -C (cache only): refreshing metadata is the patch job's business, and a download here
# would run on every host of a fleet at once. -q drops the "Last metadata expiration" line.
DNF_CHECK_UPDATE = ("dnf", "-C", "-q", "check-update")
# --security filters in dnf itself: the type column ("Important/Sec.") is translated.
DNF_SECURITY_LIST = ("dnf", "-C", "-q", "updateinfo", "list", "--available", "--security")
RPM_QUERY = ("rpm", "-qa", "--qf", RPM_FORMAT)
# dnf 4 and yum keep one directory per repository, dnf 5 moved them under libdnf5.
DNF_CACHE_DIRS = (Path("/var/cache/dnf"), Path("/var/cache/libdnf5"), Path("/var/cache/yum"))

# check-update exits 100 when updates are available, 0 when there are none, 1 on error.
UPDATES_AVAILABLE = 100


def parse_check_update(text: str) -> list[tuple[str, str, str]]:
    """Parse `dnf check-update` into (name.arch, available version, repository) triples.

    dnf wraps a row whose name fills the column: the rest follows on the next line, so
    fields are gathered across lines until a row has three. "Obsoleting Packages" starts a
    second table of packages replaced by others, which are not updates of themselves.
    """
    rows = []
    pending: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("Obsoleting"):
            break
        pending += line.split()
        if len(pending) >= 3:
            if "." in pending[0]:
                rows.append((pending[0], pending[1], pending[2]))
            pending = []
    return rows


def parse_security_list(text: str) -> set[str]:
    """Parse `dnf updateinfo list --security` ("ADVISORY TYPE NEVRA") into name.arch keys."""
    keys = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        nevra = fields[-1]
        nevr, _, arch = nevra.rpartition(".")
        name = nevr.rsplit("-", 2)[0]
        if nevr and name:
            keys.add(f"{name}.{arch}")
    return keys


def build_updates(
    rows: list[tuple[str, str, str]],
    security: set[str],
    installed: dict[str, str],
) -> list[PendingUpdate]:
    """Join check-update rows with security advisories and installed versions."""
    updates = []
    for name_arch, available, repo in rows:
        # Named as dnf names it: glibc.i686 and glibc.x86_64 are updated separately.
        classification = SECURITY if name_arch in security else OTHER
        updates.append(
            PendingUpdate(name_arch, installed.get(name_arch), available, classification, repo)
        )
    return sort_updates(updates)


class DnfBackend:
    """Read pending updates from dnf's metadata cache."""

    name = "dnf"
    classifications: tuple[str, ...] = PACKAGE_CLASSIFICATIONS

    def __init__(
        self,
        *,
        runner: CommandRunner = run_command,
        status_runner: StatusRunner = run_status,
        cache_dirs: Sequence[Path] = DNF_CACHE_DIRS,
        db_dirs: Sequence[Path] = RPM_DB_DIRS,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self._runner = runner
        self._status_runner = status_runner
        self._cache_dirs = cache_dirs
        self._db_dirs = db_dirs
        self._which = which

    def _repomd_files(self) -> list[Path]:
        """Return every cached repository's repomd.xml: a metadata refresh rewrites it."""
        return [
            repomd
            for cache in self._cache_dirs
            if cache.is_dir()
            for repomd in cache.glob("*/repodata/repomd.xml")
        ]

    def available(self) -> bool:
        """Tell whether dnf is present."""
        return self._which("dnf") is not None

    def stamp(self) -> object:
        """Return the metadata files' and the RPM database's mtimes."""
        files = self._repomd_files()
        for directory in self._db_dirs:
            if directory.is_dir():
                files += sorted(p for p in directory.iterdir() if p.is_file())
        return tuple((str(p), p.stat().st_mtime_ns) for p in files)

    def lists_updated_at(self) -> float | None:
        """Return the newest repository metadata's mtime."""
        return max((p.stat().st_mtime for p in self._repomd_files()), default=None)

    def read_updates(self) -> list[PendingUpdate]:
        """Run check-update, the security advisory list and rpm, and join them."""
        status, out = self._status_runner(DNF_CHECK_UPDATE)
        if status == 0:
            return []
        if status != UPDATES_AVAILABLE:
            raise CommandError(f"{' '.join(DNF_CHECK_UPDATE)}: exited {status}")
        rows = parse_check_update(out)
        security = parse_security_list(self._runner(DNF_SECURITY_LIST))
        versions: dict[str, list[str]] = {}
        for p in parse_rpm_query(self._runner(RPM_QUERY)):
            versions.setdefault(f"{p.name}.{p.arch}", []).append(p.version)
        # Install-only packages (kernels) keep several versions side by side: list them all.
        installed = {key: ", ".join(found) for key, found in versions.items()}
        return build_updates(rows, security, installed)
