"""Debian and Ubuntu updates: listed by simulating an upgrade with apt-get, installed by it."""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from rmm_agent.patching.base import (
    BUGFIX,
    INSTALLED,
    PACKAGE_CLASSIFICATIONS,
    SECURITY,
    Clock,
    CommandBackend,
    InstallOutcome,
    InstallStep,
    PendingUpdate,
    ProcessRunner,
    Which,
    run_process,
    sort_updates,
    update_id,
)

NAME = "apt"
# A simulation reads the lists `apt-get update` left behind: no download, no lock taken.
# dist-upgrade, not upgrade: it also counts updates that need a new dependency (kernels).
APT_SIMULATE = ("apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade")
APT_LISTS_DIR = Path("/var/lib/apt/lists")
DPKG_STATUS = Path("/var/lib/dpkg/status")
# apt and dpkg take this lock first (apt ≥ 1.9.11, dpkg ≥ 1.19.7) and hold it for a whole run.
DPKG_FRONTEND_LOCK = Path("/var/lib/dpkg/lock-frontend")
# Written by update-notifier's hooks (Ubuntu) when an installed package wants a reboot.
REBOOT_REQUIRED = Path("/var/run/reboot-required")

# Install exactly the versions the scan saw (name=version), only if already installed, and
# without a question: keep changed configuration files, take the package's where unchanged.
# Lock::Timeout=0: a held lock fails at once ("locked", retried later) instead of waiting.
APT_INSTALL = (
    "apt-get",
    "install",
    "-y",
    "-q",
    "--only-upgrade",
    "-o",
    "DPkg::Lock::Timeout=0",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
)
# Through env(1), so the command line says all: no question from debconf, needrestart or
# apt-listchanges may wait for an answer nobody gives.
INSTALL_ENV = (
    "env",
    "DEBIAN_FRONTEND=noninteractive",
    "NEEDRESTART_MODE=a",
    "APT_LISTCHANGES_FRONTEND=none",
)
DPKG_QUERY = (
    "dpkg-query",
    "-W",
    "-f",
    "${Package}:${Architecture}\t${Version}\t${db:Status-Abbrev}\n",
)

# apt's pkgSimulate prints "Inst NAME [CURRENT] (CANDIDATE RELEASES [ARCH])" and more
# bracketed notes after it; RELEASES is "Origin:Version/Archive" joined by ", ", and an
# Origin may hold spaces ("Google LLC:1.0/stable"). A new package has no [CURRENT].
INST_RE = re.compile(
    r"^Inst (?P<name>\S+)(?: \[(?P<current>[^\]]*)\])? "
    r"\((?P<available>\S+) (?P<releases>.*?) \[(?P<arch>[^\]]+)\]\)"
)
# "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234 (apt-get)",
# "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another
# process using it?", and dpkg's own "dpkg: error: dpkg frontend lock was locked by another
# process with pid 1234".
LOCK_RE = re.compile(
    r"Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock the "
    r"administration directory|frontend lock was locked by another process|"
    r"dpkg status database is locked by another process"
)
# "E: Version '9.9' for 'hello' was not found", "E: Unable to locate package foo".
PACKAGE_ERROR_RE = re.compile(
    r"^E: (?:Version '[^']*' for '(?P<versioned>[^']+)' was not found|"
    r"Unable to locate package (?P<missing>\S+))",
    re.MULTILINE,
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
    return BUGFIX, parts[0] if parts else ""


def parse_apt_simulation(text: str) -> list[PendingUpdate]:
    """Parse `apt-get -s dist-upgrade` output into the upgrades of installed packages."""
    updates = []
    for line in text.splitlines():
        match = INST_RE.match(line)
        if match is None or match["current"] is None:
            continue  # a Conf/Remv line, or a package newly pulled in rather than updated
        classification, source = classify_releases(match["releases"])
        name = match["name"]
        updates.append(
            PendingUpdate(
                id=update_id(NAME, name),
                name=name,
                current=match["current"],
                available=match["available"],
                classification=classification,
                backend=NAME,
                source=source,
                # A new kernel is only running after a reboot.
                reboot_required=name.startswith(("linux-image", "linux-generic", "linux-signed")),
            )
        )
    return sort_updates(updates)


def parse_dpkg_query(text: str) -> dict[str, str]:
    """Parse DPKG_QUERY's lines into the installed version of name and of name:arch."""
    versions: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 3 or not fields[2].startswith("ii"):
            continue  # not fully installed (half-configured, removed with its config kept)
        qualified, version = fields[0], fields[1]
        versions[qualified] = version
        versions.setdefault(qualified.rsplit(":", 1)[0], version)
    return versions


def parse_package_errors(text: str) -> dict[str, str]:
    """Return apt's own error per package name, for the errors that name one."""
    errors = {}
    for match in PACKAGE_ERROR_RE.finditer(text):
        name = match["versioned"] or match["missing"]
        errors[name.split("=")[0]] = match[0].removeprefix("E: ")
    return errors


def newest_mtime(paths: list[Path]) -> float | None:
    """Return the newest mtime among `paths` that exist, or None."""
    times = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times, default=None)


def read_lock_holder(lock: Path) -> str | None:
    """Say whether another process holds dpkg's frontend lock, by trying to take it at once.

    The same fcntl lock apt and dpkg take; it is released again at once (the file is closed).
    None when the lock is free or cannot be tried (no such file, not root): apt then says.
    """
    import fcntl  # noqa: PLC0415 - POSIX only; this module is imported on Windows too

    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return (
                f"{lock} is held by another process (an apt, dpkg or unattended-upgrades run); "
                "the install is retried when it is free"
            )
        return None
    finally:
        os.close(fd)  # closing drops the lock this process may have taken
    return None


class AptBackend(CommandBackend):
    """Read pending updates from apt's package lists and dpkg's status; install with apt-get."""

    name: str = NAME
    classifications: tuple[str, ...] = PACKAGE_CLASSIFICATIONS
    program: ClassVar[str] = "apt-get"

    def __init__(
        self,
        *,
        runner: ProcessRunner = run_process,
        lists_dir: Path = APT_LISTS_DIR,
        status_file: Path = DPKG_STATUS,
        lock_file: Path = DPKG_FRONTEND_LOCK,
        reboot_flag: Path = REBOOT_REQUIRED,
        apt_options: Sequence[str] = (),
        which: Which | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(runner=runner, which=which, clock=clock)
        self._lists_dir = lists_dir
        self._status_file = status_file
        self._lock_file = lock_file
        self._reboot_flag = reboot_flag
        # "-o Dir::Etc::sourcelist=..." and the like, given to every apt-get run.
        self._apt_options = tuple(apt_options)

    def available(self) -> bool:
        """Tell whether apt-get and dpkg's database are present."""
        return super().available() and self._status_file.is_file()

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

    def simulate_argv(self) -> list[str]:
        """Return the simulation's command line, with this backend's apt options."""
        return [*APT_SIMULATE[:2], *self._apt_options, *APT_SIMULATE[2:]]

    def read_updates(self) -> list[PendingUpdate]:
        """Simulate a dist-upgrade and list what it would upgrade."""
        return parse_apt_simulation(self.query(self.simulate_argv()))

    def lock_holder(self) -> str | None:
        """Say whether dpkg's frontend lock is held by another process."""
        return read_lock_holder(self._lock_file)

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one apt-get install of every update, each pinned to the version scanned."""
        argv = [*INSTALL_ENV, *APT_INSTALL[:2], *self._apt_options, *APT_INSTALL[2:]]
        argv += [f"{u.name}={u.available}" for u in updates]
        return [InstallStep(argv, list(updates))]

    def is_lock_message(self, text: str) -> bool:
        """Tell whether apt or dpkg said that another process holds its lock."""
        return LOCK_RE.search(text) is not None

    def failure_messages(self, step: InstallStep, stdout: str, stderr: str) -> dict[str, str]:
        """Return apt's errors that name one of the step's packages."""
        errors = parse_package_errors(stderr + "\n" + stdout)
        return {u.id: errors[u.name] for u in step.updates if u.name in errors}

    def installed_versions(self, updates: Sequence[PendingUpdate]) -> dict[str, str | None]:
        """Ask dpkg-query which versions are installed now."""
        argv = [*DPKG_QUERY, *(u.name for u in updates)]
        # dpkg-query exits 1 when one of the names is not installed: the rest still print.
        _rc, out, _err = self._runner(argv, 60.0)
        versions = parse_dpkg_query(out)
        return {u.id: versions.get(u.name) for u in updates}

    def install(self, ids: Sequence[str], timeout: float) -> list[InstallOutcome]:
        """Install, check, and mark what asks for a reboot (/var/run/reboot-required)."""
        outcomes = super().install(ids, timeout)
        wants = self._reboot_packages()
        if wants is None:
            return outcomes
        return [
            InstallOutcome(o.id, o.status, o.message, o.version, True)
            if o.status == INSTALLED and (not wants or o.id.split(":", 1)[1] in wants)
            else o
            for o in outcomes
        ]

    def _reboot_packages(self) -> set[str] | None:
        """Return the packages that asked for a reboot (empty: unnamed), None if none did."""
        if not self._reboot_flag.exists():
            return None
        try:
            names = self._reboot_flag.with_name(self._reboot_flag.name + ".pkgs").read_text()
        except OSError:
            return set()
        return set(names.split())
