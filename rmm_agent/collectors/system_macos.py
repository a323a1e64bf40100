"""Read OS identity and virtualization on macOS."""

from __future__ import annotations

import logging
import platform

from rmm_agent.collectors.base import CommandError, CommandRunner

log = logging.getLogger(__name__)


def read_os_identity() -> tuple[str, str]:
    """Return ("macOS", product version such as "14.4.1")."""
    return "macOS", platform.mac_ver()[0]


def detect_virtualization(runner: CommandRunner) -> str | None:
    """Tell from the kernel whether macOS runs under a hypervisor; None if it cannot say."""
    try:
        out = runner(["sysctl", "-n", "kern.hv_vmm_present"]).strip()
    except CommandError as exc:
        log.debug("system: %s", exc)
        return None
    return {"1": "vm", "0": "none"}.get(out)
