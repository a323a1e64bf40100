"""List installed Debian packages with dpkg-query."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from rmm_agent.collectors._packages import Package, sort_packages
from rmm_agent.collectors.base import CommandRunner, run_command

# ${Status} is "want flag status": only status "installed" (and the two "installed, triggers
# pending" states) means the package's files are on disk; "config-files" is a removed
# package whose configuration was kept.
DPKG_FORMAT = r"${Status}\t${Package}\t${Version}\t${Architecture}\n"
INSTALLED_STATES = frozenset({"installed", "triggers-awaited", "triggers-pending"})


def parse_dpkg_query(text: str) -> list[Package]:
    """Parse `dpkg-query -W -f=DPKG_FORMAT` output, keeping installed packages only."""
    packages = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 4:
            continue
        status, name, version, arch = fields
        words = status.split()
        if words and words[-1] in INSTALLED_STATES:
            packages.append(Package(name, version, arch or None))
    return sort_packages(packages)


class DpkgBackend:
    """Read installed packages from dpkg's database."""

    name = "dpkg"

    def __init__(
        self,
        *,
        runner: CommandRunner = run_command,
        status_file: Path = Path("/var/lib/dpkg/status"),
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self._runner = runner
        self._status_file = status_file
        self._which = which

    def available(self) -> bool:
        """Tell whether dpkg-query and its database are present."""
        return self._which("dpkg-query") is not None and self._status_file.is_file()

    def stamp(self) -> object:
        """Return the status file's mtime and size: dpkg rewrites it on every change."""
        st = self._status_file.stat()
        return st.st_mtime_ns, st.st_size

    def read_packages(self) -> list[Package]:
        """Run dpkg-query for every package dpkg knows."""
        return parse_dpkg_query(self._runner(["dpkg-query", "-W", f"-f={DPKG_FORMAT}"]))
