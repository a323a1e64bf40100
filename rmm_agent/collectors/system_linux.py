"""Read OS identity, container markers and pending reboots on Linux."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

from rmm_agent.collectors._common import StatusRunner, read_line, read_text
from rmm_agent.collectors.base import CommandError

log = logging.getLogger(__name__)

# os-release values escape $, ", ` and the backslash itself with a backslash.
_ESCAPE_RE = re.compile(r"\\(.)")

# Where reboot-notifier/update-notifier-common (Debian, Ubuntu) leave their flag; /var/run is
# a symlink to /run on current systems but not on every old one.
REBOOT_FLAGS = ("run/reboot-required", "var/run/reboot-required")


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5): KEY=value lines, values optionally quoted with backslash escapes."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = _ESCAPE_RE.sub(r"\1", value[1:-1])
        else:
            # Unquoted, or an unbalanced quote: keep the text rather than lose the key.
            value = value.strip("\"'")
        result[key.strip()] = value
    return result


def read_os_release(root: Path = Path("/")) -> dict[str, str]:
    """Read /etc/os-release, falling back to /usr/lib/os-release as os-release(5) says."""
    for candidate in ("etc/os-release", "usr/lib/os-release"):
        text = read_text(root / candidate)
        if text is not None:
            return parse_os_release(text)
    return {}


def os_family(release: dict[str, str]) -> frozenset[str]:
    """Return the distribution's ID with its ID_LIKE parents ("ubuntu", "debian")."""
    return frozenset([release.get("ID", ""), *release.get("ID_LIKE", "").split()]) - {""}


def parse_cgroup_container(text: str) -> str | None:
    """Name the container runtime from /proc/1/cgroup, or None if it shows none."""
    for line in text.splitlines():
        path = line.rsplit(":", 1)[-1]
        if "/docker/" in path or "/docker-" in path:
            return "docker"
        if "/libpod-" in path:
            return "podman"
        if "/lxc/" in path or "/lxc.payload" in path:
            return "lxc"
        if "/kubepods" in path:
            return "container-other"
    return None


def detect_container(root: Path = Path("/")) -> str | None:
    """Name the container this process runs in from marker files, or None."""
    if (root / ".dockerenv").exists():
        return "docker"
    if (root / "run" / ".containerenv").exists():
        return "podman"
    container = read_line(root / "run" / "systemd" / "container")
    if container:
        return container
    cgroup = read_text(root / "proc" / "1" / "cgroup")
    if cgroup:
        found = parse_cgroup_container(cgroup)
        if found:
            return found
    osrelease = read_line(root / "proc" / "sys" / "kernel" / "osrelease") or ""
    if "microsoft" in osrelease.lower():
        return "wsl"
    return None


def detect_virt_command(status_runner: StatusRunner) -> str | None:
    """Ask systemd-detect-virt; None when it is missing or says nothing useful."""
    try:
        _, out = status_runner(["systemd-detect-virt"])
    except CommandError as exc:
        log.debug("system: %s", exc)
        return None
    # It prints "none" and exits 1 on bare metal: that is an answer, not an error.
    value = out.strip().splitlines()[0].strip() if out.strip() else ""
    return value or None


def read_reboot_flag(root: Path = Path("/")) -> tuple[float, list[str]] | None:
    """Return when Debian's reboot-required flag appeared and the packages asking; None if unset."""
    for flag in REBOOT_FLAGS:
        path = root / flag
        try:
            since = path.stat().st_mtime
        except OSError:
            continue
        text = read_text(path.with_name("reboot-required.pkgs")) or ""
        packages = sorted({line.strip() for line in text.splitlines() if line.strip()})
        return since, packages
    return None


def parse_needs_restarting(status: int, stdout: str) -> tuple[bool, list[str]] | None:
    """Parse `needs-restarting -r`: (reboot needed, what asks for it), or None if unclear."""
    reasons = _bullets(stdout.splitlines())
    if status == 1 and "Reboot is required" in stdout:
        return True, reasons
    if status == 0 and "Reboot should not be necessary" in stdout:
        return False, []
    return None


def _bullets(lines: Iterable[str]) -> list[str]:
    """Return the `  * item` entries of a text listing."""
    return [line.strip()[2:].strip() for line in lines if line.strip().startswith("* ")]


def check_needs_restarting(status_runner: StatusRunner) -> tuple[bool, list[str]] | None:
    """Run `needs-restarting -r` (RHEL, Fedora); None when it is missing or unclear."""
    try:
        status, out = status_runner(["needs-restarting", "-r"])
    except CommandError as exc:
        log.debug("system: %s", exc)
        return None
    result = parse_needs_restarting(status, out)
    if result is None:
        log.debug("system: needs-restarting -r exited %d with unexpected output", status)
    return result
