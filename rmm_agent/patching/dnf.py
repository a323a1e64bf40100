"""RHEL, Fedora and derivatives: updates listed from dnf's (or yum's) cache, installed by it."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from rmm_agent.patching._rpm import (
    RPM_DB_DIRS,
    RPM_LOCKS,
    RPM_QUERY,
    installed_after,
    parse_rpm_versions,
    read_rpm_lock_holder,
)
from rmm_agent.patching.base import (
    BUGFIX,
    FEATURE,
    SECURITY,
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

NAME = "dnf"
# -C (cache only): refreshing metadata is the patch job's business, and a download here
# would run on every host of a fleet at once. -q drops the "Last metadata expiration" line.
CHECK_UPDATE = ("-C", "-q", "check-update")
# All advisories of pending updates: "ADVISORY TYPE NEVRA"; LC_ALL=C keeps TYPE untranslated.
UPDATEINFO = ("-C", "-q", "updateinfo", "list", "--available")
# exit_on_lock: fail at once ("already locked by PID") instead of waiting for the other run.
INSTALL = ("-y", "--setopt=exit_on_lock=True", "upgrade")
# dnf 4 and yum keep one directory per repository, dnf 5 moved them under libdnf5.
DNF_CACHE_DIRS = (Path("/var/cache/dnf"), Path("/var/cache/libdnf5"), Path("/var/cache/yum"))
# dnf 4's lock of the RPM database: a pid file, locked while a dnf transaction runs.
DNF_RPMDB_LOCK = Path("/var/lib/dnf/rpmdb_lock.pid")

# check-update exits 100 when updates are available, 0 when there are none, 1 on error.
UPDATES_AVAILABLE = 100
# dnf 4's ProcessLockError ("RPMDB already locked by 4182"), yum 3's "Another app is
# currently holding the yum lock", dnf 5's "Failed to obtain rpm transaction lock".
LOCK_RE = re.compile(
    r"already locked by \d+|holding the yum lock|Failed to obtain rpm transaction lock|"
    r"waiting for transaction lock"
)
# updateinfo's TYPE column: "Important/Sec.", "Moderate/Sec.", "bugfix", "enhancement"
# (dnf 4); dnf 5 says "security", "bugfix", "enhancement" and puts severity apart.
SEVERITY_RE = re.compile(r"^(?P<severity>[A-Z][a-z]+)/Sec\.$")
ADVISORY_TYPES = {"bugfix": BUGFIX, "enhancement": FEATURE, "newpackage": FEATURE}


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


def nevra_key(nevra: str) -> str:
    """Return "name.arch" of a NEVRA ("glibc-2.34-100.el9_4.2.i686" -> "glibc.i686")."""
    nevr, _, arch = nevra.rpartition(".")
    name = nevr.rsplit("-", 2)[0]
    return f"{name}.{arch}" if nevr and name else ""


def parse_updateinfo(text: str) -> dict[str, tuple[str, str]]:
    """Parse `dnf updateinfo list` into (classification, severity) per "name.arch".

    A package fixed by several advisories takes the most urgent: security over the rest.
    """
    found: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or not (key := nevra_key(fields[-1])):
            continue
        kind = fields[1]
        severity_match = SEVERITY_RE.match(kind)
        if severity_match is not None or kind.lower() == "security":
            severity = severity_match["severity"] if severity_match else ""
            classification = SECURITY
        else:
            classification, severity = ADVISORY_TYPES.get(kind.lower(), BUGFIX), ""
        if found.get(key, ("", ""))[0] != SECURITY:
            found[key] = (classification, severity)
    return found


def parse_security_list(text: str) -> set[str]:
    """Return the "name.arch" keys of `dnf updateinfo list --security`'s packages."""
    return {key for key, (kind, _sev) in parse_updateinfo(text).items() if kind == SECURITY}


def build_updates(
    rows: list[tuple[str, str, str]],
    advisories: dict[str, tuple[str, str]],
    installed: dict[str, list[str]],
    backend: str = NAME,
) -> list[PendingUpdate]:
    """Join check-update rows with advisories and installed versions."""
    updates = []
    for name_arch, available, repo in rows:
        # Named as dnf names it: glibc.i686 and glibc.x86_64 are updated separately.
        classification, severity = advisories.get(name_arch, (BUGFIX, ""))
        current = installed.get(name_arch)
        updates.append(
            PendingUpdate(
                id=update_id(backend, name_arch),
                name=name_arch,
                # Install-only packages (kernels) keep several versions side by side.
                current=", ".join(current) if current else None,
                available=available,
                classification=classification,
                backend=backend,
                source=repo,
                severity=severity,
                reboot_required=name_arch.split(".")[0] in ("kernel", "kernel-core", "glibc"),
            )
        )
    return sort_updates(updates)


def read_pid_lock(path: Path) -> str | None:
    """Say whether dnf's pid lock names a running process."""
    try:
        pid = int(path.read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    if pid > 0 and Path(f"/proc/{pid}").exists() and pid != os.getpid():
        return f"{path} names running process {pid} (another dnf run); retried when it ends"
    return None


class DnfBackend(CommandBackend):
    """Read pending updates from dnf's metadata cache (yum where dnf is missing)."""

    name: str = NAME
    classifications: tuple[str, ...] = (SECURITY, BUGFIX, FEATURE)
    program: ClassVar[str] = "dnf"

    def __init__(
        self,
        *,
        runner: ProcessRunner = run_process,
        cache_dirs: Sequence[Path] = DNF_CACHE_DIRS,
        db_dirs: Sequence[Path] = RPM_DB_DIRS,
        locks: Sequence[Path] = RPM_LOCKS,
        pid_lock: Path = DNF_RPMDB_LOCK,
        which: Which | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(runner=runner, which=which, clock=clock)
        self._cache_dirs = cache_dirs
        self._db_dirs = db_dirs
        self._locks = locks
        self._pid_lock = pid_lock

    def manager(self) -> str:
        """Return "dnf", or "yum" on a host that has only yum (RHEL 7)."""
        if self._which("dnf") is None and self._which("yum") is not None:
            return "yum"
        return "dnf"

    def _repomd_files(self) -> list[Path]:
        """Return every cached repository's repomd.xml: a metadata refresh rewrites it."""
        return [
            repomd
            for cache in self._cache_dirs
            if cache.is_dir()
            for repomd in cache.glob("*/repodata/repomd.xml")
        ]

    def available(self) -> bool:
        """Tell whether dnf or yum is present."""
        return self._which("dnf") is not None or self._which("yum") is not None

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
        """Run check-update, the advisory list and rpm, and join them."""
        argv = ["env", "LC_ALL=C", self.manager(), *CHECK_UPDATE]
        status, out, err = self._runner(argv, 180.0)
        if status == 0:
            return []
        if status != UPDATES_AVAILABLE:
            raise PatchError(f"{' '.join(argv)}: exited {status}: {err.strip()[:300]}")
        rows = parse_check_update(out)
        advisories = parse_updateinfo(self.query(["env", "LC_ALL=C", self.manager(), *UPDATEINFO]))
        installed = parse_rpm_versions(self.query(RPM_QUERY))
        return build_updates(rows, advisories, installed)

    def lock_holder(self) -> str | None:
        """Say whether an rpm transaction or another dnf run holds the lock."""
        return read_rpm_lock_holder(self._locks) or read_pid_lock(self._pid_lock)

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one upgrade of every update to the exact version scanned (its NEVRA)."""
        targets = []
        for u in updates:
            name, _, arch = u.name.rpartition(".")
            targets.append(f"{name}-{u.available}.{arch}")
        return [InstallStep(["env", "LC_ALL=C", self.manager(), *INSTALL, *targets], list(updates))]

    def is_lock_message(self, text: str) -> bool:
        """Tell whether dnf or yum said another run holds its lock."""
        return LOCK_RE.search(text) is not None

    def installed_versions(self, updates: Sequence[PendingUpdate]) -> dict[str, str | None]:
        """Read the installed versions with rpm (the newest of an install-only package)."""
        return installed_after(updates, parse_rpm_versions(self.query(RPM_QUERY)))
