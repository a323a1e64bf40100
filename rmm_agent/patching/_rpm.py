"""Share what dnf, yum and zypper read from rpm: installed versions and rpm's lock."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from rmm_agent.patching.base import PendingUpdate

# NAME, [EPOCH:]VERSION-RELEASE and ARCH, tab-separated (the software collector's format).
RPM_FORMAT = r"%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n"
RPM_QUERY = ("rpm", "-qa", "--qf", RPM_FORMAT)
# Berkeley DB (RHEL 7/8), SQLite (RHEL 9, Fedora 33+) and the /usr/lib/sysimage move (Fedora
# 36+, openSUSE): whichever exists holds the database.
RPM_DB_DIRS = (Path("/var/lib/rpm"), Path("/usr/lib/sysimage/rpm"))
# rpm takes this fcntl lock for every transaction, whoever started it (dnf, zypper, rpm -U).
RPM_LOCKS = tuple(d / ".rpm.lock" for d in RPM_DB_DIRS)


def parse_rpm_versions(text: str) -> dict[str, list[str]]:
    """Parse `rpm -qa --qf RPM_FORMAT` into the installed versions per "name.arch"."""
    versions: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[0]:
            versions.setdefault(f"{fields[0]}.{fields[2]}", []).append(fields[1])
    return versions


def installed_after(
    updates: Sequence[PendingUpdate], versions: dict[str, list[str]]
) -> dict[str, str | None]:
    """Return each update's installed version from `parse_rpm_versions`' result.

    Install-only packages (kernels) keep the old version beside the new one: the available
    version counts as installed when it is among them.
    """
    found: dict[str, str | None] = {}
    for update in updates:
        have = versions.get(update.name) or []
        if update.available in have:
            found[update.id] = update.available
        else:
            found[update.id] = have[-1] if have else None
    return found


def read_rpm_lock_holder(locks: Sequence[Path] = RPM_LOCKS) -> str | None:
    """Say whether an rpm transaction holds rpm's lock, by trying to take it at once."""
    import fcntl  # noqa: PLC0415 - POSIX only; this module is imported on Windows too

    for lock in locks:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return f"{lock} is held by a running rpm transaction; retried when it is free"
        finally:
            os.close(fd)
    return None
