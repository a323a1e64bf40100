"""List installed RPM packages with rpm -qa."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from rmm_agent.collectors._packages import Package, sort_packages
from rmm_agent.collectors.base import CommandRunner, run_command

# The epoch is shown only when set (as "1:2.3-4"), the way dnf and yum print versions.
RPM_FORMAT = r"%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n"
# Berkeley DB (RHEL 7/8), SQLite (RHEL 9, Fedora 33+) and the /usr/lib/sysimage move (Fedora
# 36+, openSUSE): whichever exists holds the database.
RPM_DB_DIRS = (Path("/var/lib/rpm"), Path("/usr/lib/sysimage/rpm"))


def parse_rpm_query(text: str) -> list[Package]:
    """Parse `rpm -qa --qf RPM_FORMAT` output."""
    packages = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            continue
        name, version, arch = fields
        # Imported signing keys are stored as pseudo-packages named gpg-pubkey.
        if name == "gpg-pubkey":
            continue
        packages.append(Package(name, version, None if arch in ("", "(none)") else arch))
    return sort_packages(packages)


class RpmBackend:
    """Read installed packages from the RPM database."""

    name = "rpm"

    def __init__(
        self,
        *,
        runner: CommandRunner = run_command,
        db_dirs: Sequence[Path] = RPM_DB_DIRS,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self._runner = runner
        self._db_dirs = db_dirs
        self._which = which

    def _db_files(self) -> list[Path]:
        """Return the files of the first non-empty database directory."""
        for directory in self._db_dirs:
            if directory.is_dir():
                files = sorted(p for p in directory.iterdir() if p.is_file())
                if files:
                    return files
        return []

    def available(self) -> bool:
        """Tell whether rpm and a non-empty database are present."""
        return self._which("rpm") is not None and bool(self._db_files())

    def stamp(self) -> object:
        """Return name, mtime and size of every database file: rpm writes them on each change."""
        return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in self._db_files())

    def read_packages(self) -> list[Package]:
        """Run rpm -qa for every installed package."""
        return parse_rpm_query(self._runner(["rpm", "-qa", "--qf", RPM_FORMAT]))
