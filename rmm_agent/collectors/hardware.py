"""Collect the hardware inventory: CPU, memory, disks, network cards, vendor, model, BIOS."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import psutil

from rmm_agent.collectors import hardware_linux, hardware_macos, hardware_windows
from rmm_agent.collectors._common import Clock, PsutilModule, Refresher
from rmm_agent.collectors._winreg import WinregModule, load_winreg
from rmm_agent.collectors.base import (
    CollectorOutput,
    CommandRunner,
    Sample,
    run_command,
)
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec

_EMPTY_MAC = "00:00:00:00:00:00"
# Every OS reports the same system keys, None where it has no such fact.
SYSTEM_KEYS = tuple(hardware_linux.DMI_FIELDS.values())


class HardwareCollector:
    """Report what the machine is made of; unreadable facts are None, not errors.

    Hardware changes rarely and reading it can be slow (system_profiler on macOS), so the
    inventory is re-read at most every `refresh_seconds`.
    """

    name: ClassVar[str] = "hardware"
    inventory: ClassVar[bool] = True
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.HARDWARE

    def __init__(
        self,
        *,
        psutil_module: PsutilModule = psutil,
        sys_root: Path = Path("/sys"),
        proc_root: Path = Path("/proc"),
        platform: str = sys.platform,
        runner: CommandRunner = run_command,
        winreg_module: WinregModule | None = None,
        clock: Clock = time.monotonic,
        refresh_seconds: float = 3600.0,
    ) -> None:
        self._psutil = psutil_module
        self._sys_root = sys_root
        self._proc_root = proc_root
        self._platform = platform
        self._runner = runner
        self._winreg = winreg_module
        self._latest = Refresher(self._read, refresh_seconds, clock)

    def collect(self) -> CollectorOutput:
        """Return the hardware inventory, read again once refresh_seconds have passed."""
        return self._latest.get()

    def _read(self) -> CollectorOutput:
        """Read the inventory from psutil and the OS-specific sources."""
        ps = self._psutil
        facts = self._platform_facts()
        cpu = facts["cpu"]
        cpu["physical_cores"] = ps.cpu_count(logical=False)
        cpu["logical_cores"] = ps.cpu_count()
        disks: list[dict[str, Any]] = facts["disks"]
        info = {
            "cpu": cpu,
            "memory": {"total_bytes": int(ps.virtual_memory().total)},
            "disks": disks,
            "nics": self._nics(),
            "system": {key: facts["system"].get(key) for key in SYSTEM_KEYS},
        }
        samples = [
            Sample("hardware_disk_size_bytes", float(d["size_bytes"]), {"device": d["name"]})
            for d in disks
            if d.get("size_bytes") is not None and d.get("name")
        ]
        return CollectorOutput(samples=samples, info=info)

    def _platform_facts(self) -> dict[str, Any]:
        """Return cpu, system and disks facts from this OS's own sources."""
        if self._platform.startswith("linux"):
            cpuinfo = hardware_linux.read_cpuinfo(self._proc_root)
            return {
                "cpu": {"model": cpuinfo.model, "vendor": cpuinfo.vendor,
                        "sockets": cpuinfo.sockets or None},
                "system": hardware_linux.read_dmi(self._sys_root),
                "disks": hardware_linux.read_block_devices(self._sys_root),
            }  # fmt: skip
        if self._platform.startswith("win"):
            reg = self._winreg if self._winreg is not None else load_winreg()
            return {
                "cpu": hardware_windows.read_cpu(reg),
                "system": hardware_windows.read_system(reg),
                "disks": hardware_windows.read_disks(reg),
            }
        if self._platform == "darwin":
            return hardware_macos.read_hardware(self._runner)
        return {"cpu": {"model": None, "vendor": None}, "system": {}, "disks": []}

    def _nics(self) -> list[dict[str, Any]]:
        """List network cards with their MAC addresses (hardware ones only on Linux)."""
        ps = self._psutil
        nics = []
        for name, addrs in sorted(ps.net_if_addrs().items()):
            mac = next((a.address for a in addrs if a.family == ps.AF_LINK), None)
            if not mac or mac == _EMPTY_MAC:
                continue  # loopback, tunnels
            # Bridges, veth pairs and tunnels change with containers and VPNs: on Linux, only
            # interfaces backed by a device are hardware.
            if self._platform.startswith("linux") and not hardware_linux.is_physical_nic(
                self._sys_root, name
            ):
                continue
            nics.append({"name": name, "mac": mac})
        return nics
