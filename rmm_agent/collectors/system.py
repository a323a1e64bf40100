"""Collect host identity, boot time, uptime, logged-in users, virtualization, pending reboot."""

from __future__ import annotations

import logging
import platform
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import psutil

from rmm_agent.collectors import hardware_linux, system_linux, system_macos, system_windows
from rmm_agent.collectors._common import Clock, PsutilModule, StatusRunner, run_status
from rmm_agent.collectors._winreg import WinregModule, load_winreg
from rmm_agent.collectors.base import (
    CollectorOutput,
    CommandRunner,
    Sample,
    run_command,
)
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec

log = logging.getLogger(__name__)

# Firmware strings of virtual machines -> systemd-detect-virt's names, as systemd matches
# them (prefix of product name, system vendor, board vendor or BIOS vendor).
DMI_HYPERVISORS = (
    ("KVM", "kvm"),
    ("OpenStack", "kvm"),
    ("KubeVirt", "kvm"),
    ("Amazon EC2", "amazon"),
    ("QEMU", "qemu"),
    ("VMware", "vmware"),
    ("VMW", "vmware"),
    ("innotek GmbH", "oracle"),
    ("VirtualBox", "oracle"),
    ("Oracle Corporation", "oracle"),
    ("Xen", "xen"),
    ("Bochs", "bochs"),
    ("Parallels", "parallels"),
    ("BHYVE", "bhyve"),
    ("Hyper-V", "microsoft"),
    ("Apple Virtualization", "apple"),
    ("Google Compute Engine", "google"),
    ("Google", "google"),
)


def classify_dmi(strings: Iterable[str | None]) -> str | None:
    """Name the hypervisor from firmware strings, or None if they look like real hardware."""
    present = [s for s in strings if s]
    for s in present:
        for prefix, name in DMI_HYPERVISORS:
            if s.startswith(prefix):
                return name
    # Hyper-V guests say "Microsoft Corporation" / "Virtual Machine"; Surface laptops say
    # "Microsoft Corporation" too, so the vendor alone is not enough.
    if "Virtual Machine" in present and "Microsoft Corporation" in present:
        return "microsoft"
    return None


# Spellings of the same architectures across OSes (Windows "AMD64", macOS "arm64").
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i686": "x86",
                 "i386": "x86"}  # fmt: skip


def normalize_arch(machine: str) -> str:
    """Return one name per CPU architecture whatever the OS calls it."""
    return _ARCH_ALIASES.get(machine.lower(), machine.lower())


def os_key(platform_name: str) -> str:
    """Map sys.platform to the short OS key the server uses ("linux", "windows", "macos")."""
    if platform_name.startswith("linux"):
        return "linux"
    if platform_name.startswith("win"):
        return "windows"
    if platform_name == "darwin":
        return "macos"
    return platform_name


@dataclass(frozen=True, slots=True)
class _Identity:
    """The OS as it names itself, with extra facts for info."""

    name: str
    version: str
    extra: dict[str, Any] = field(default_factory=dict)
    # The distribution and what it derives from ("ubuntu", "debian"); empty off Linux.
    family: frozenset[str] = frozenset()


@dataclass(slots=True)
class _RebootState:
    """A pending reboot as last checked."""

    required: bool | None = None
    since: float | None = None
    reasons: list[str] = field(default_factory=list)


class SystemCollector:
    """Report who and what this host is, how long it has been up, and whether it needs a reboot."""

    name: ClassVar[str] = "system"
    inventory: ClassVar[bool] = False
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.SYSTEM

    def __init__(
        self,
        *,
        psutil_module: PsutilModule = psutil,
        root: Path = Path("/"),
        platform_name: str = sys.platform,
        runner: CommandRunner = run_command,
        status_runner: StatusRunner = run_status,
        winreg_module: WinregModule | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        reboot_check_seconds: float = 3600.0,
    ) -> None:
        self._psutil = psutil_module
        self._root = root
        self._platform = platform_name
        self._runner = runner
        self._status_runner = status_runner
        self._winreg = winreg_module
        self._clock = clock
        self._monotonic = monotonic
        # `needs-restarting` loads the whole dnf stack (about a second of CPU): check it rarely.
        self._reboot_check_seconds = reboot_check_seconds
        self._reboot = _RebootState()
        self._reboot_checked_at: float | None = None
        self._virtualization: str | None = None

    def collect(self) -> CollectorOutput:
        """Read identity, boot time, users, virtualization and reboot state."""
        uname = platform.uname()
        identity = self._os_identity()
        boot = float(self._psutil.boot_time())
        users = [
            {"name": u.name, "terminal": u.terminal, "host": u.host, "started": u.started}
            for u in self._psutil.users()
        ]
        if self._virtualization is None:
            # A host does not change hypervisor while the agent runs: detect once.
            self._virtualization = self._detect_virtualization()
        reboot = self._reboot_state(identity.family)

        samples = [
            Sample("system_boot_time_seconds", boot),
            Sample("system_uptime_seconds", max(0.0, self._clock() - boot)),
            Sample("system_users", float(len(users))),
        ]
        if reboot.required is not None:
            samples.append(Sample("system_reboot_required", 1.0 if reboot.required else 0.0))
            if reboot.required and reboot.since is not None:
                samples.append(Sample("system_reboot_required_time_seconds", reboot.since))
        info: dict[str, Any] = {
            "hostname": socket.gethostname(),
            "os": os_key(self._platform),
            "os_name": identity.name,
            "os_version": identity.version,
            # Windows' release is "10" or "11": its kernel build is in the version field.
            "kernel": uname.version if self._platform.startswith("win") else uname.release,
            "arch": normalize_arch(uname.machine),
            "boot_time": boot,
            "virtualization": self._virtualization,
            "users": users,
            "reboot_required": reboot.required,
            "reboot_reasons": reboot.reasons,
            **identity.extra,
        }
        return CollectorOutput(samples=samples, info=info)

    def _reg(self) -> WinregModule:
        """Return the winreg module given, or the real one."""
        if self._winreg is None:
            self._winreg = load_winreg()
        return self._winreg

    def _os_identity(self) -> _Identity:
        """Return the OS's name, version and extra facts."""
        if self._platform.startswith("linux"):
            release = system_linux.read_os_release(self._root)
            name = release.get("NAME", "Linux")
            # Rolling and testing distributions have no VERSION_ID.
            version = release.get("VERSION_ID") or release.get("BUILD_ID") or ""
            extra = {"os_pretty_name": release.get("PRETTY_NAME", name), "os_id": release.get("ID")}
            return _Identity(name, version, extra, system_linux.os_family(release))
        if self._platform.startswith("win"):
            name, version, release_name = system_windows.read_os_identity(self._reg())
            return _Identity(name, version, {"os_release": release_name})
        if self._platform == "darwin":
            return _Identity(*system_macos.read_os_identity())
        return _Identity(platform.system(), platform.release())

    def _detect_virtualization(self) -> str:
        """Name the hypervisor or container runtime ("none" on bare metal, "vm" if unnamed)."""
        if self._platform.startswith("linux"):
            found = system_linux.detect_virt_command(self._status_runner)
            found = found or system_linux.detect_container(self._root)
            if found is None:
                dmi = hardware_linux.read_dmi(self._root / "sys")
                fields = ("model", "vendor", "board_vendor", "bios_vendor")
                found = classify_dmi(dmi[f] for f in fields)
            if found is None:
                cpu = hardware_linux.read_cpuinfo(self._root / "proc")
                # The CPUID hypervisor bit says "virtual" without saying whose.
                found = "vm" if "hypervisor" in cpu.flags else None
            return found or "none"
        if self._platform.startswith("win"):
            return classify_dmi(system_windows.read_firmware_strings(self._reg())) or "none"
        if self._platform == "darwin":
            return system_macos.detect_virtualization(self._runner) or "unknown"
        return "unknown"

    def _reboot_state(self, family: frozenset[str]) -> _RebootState:
        """Return whether a reboot is pending, and since when, the cheapest way the OS allows."""
        if self._platform.startswith("linux"):
            flag = system_linux.read_reboot_flag(self._root)
            if flag is not None:
                return _RebootState(True, flag[0], flag[1])
            if family & {"debian", "ubuntu"}:
                # Debian-family package scripts create the flag whenever a reboot is due.
                return _RebootState(False)
            return self._needs_restarting()
        if self._platform.startswith("win"):
            since = system_windows.read_reboot_pending(self._reg())
            return _RebootState(since is not None, since)
        return _RebootState()

    def _needs_restarting(self) -> _RebootState:
        """Run `needs-restarting -r` at most every reboot_check_seconds; remember the answer."""
        now = self._monotonic()
        due = self._reboot_checked_at is None or (
            now - self._reboot_checked_at >= self._reboot_check_seconds
        )
        if not due:
            return self._reboot
        self._reboot_checked_at = now
        result = system_linux.check_needs_restarting(self._status_runner)
        if result is None:
            self._reboot = _RebootState()
        elif result[0]:
            # The tool leaves no flag file: the pending reboot dates from when we first saw it.
            since = self._reboot.since if self._reboot.required else self._clock()
            self._reboot = _RebootState(True, since, result[1])
        else:
            self._reboot = _RebootState(False)
        return self._reboot
