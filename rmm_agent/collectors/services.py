"""Collect service states: systemd units on Linux, Windows services on Windows."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import psutil

from rmm_agent.collectors import services_linux, services_windows
from rmm_agent.collectors._common import Clock, PsutilModule, Refresher
from rmm_agent.collectors.base import (
    CollectorOutput,
    CommandRunner,
    Sample,
    run_command,
)
from rmm_agent.collectors.services_linux import ServiceState
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec

log = logging.getLogger(__name__)

# Active states always reported (0 when none) so that policies always find a series.
BASE_STATES = ("active", "inactive", "failed", "activating", "deactivating")


class ServicesCollector:
    """Report how many services are in each state and which ones have failed.

    Listing services spawns systemctl (or queries ~300 Windows services): the list is
    refreshed at most every `refresh_seconds` and reused in between.
    """

    name: ClassVar[str] = "services"
    inventory: ClassVar[bool] = False
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.SERVICES

    def __init__(
        self,
        *,
        runner: CommandRunner = run_command,
        psutil_module: PsutilModule = psutil,
        run_root: Path = Path("/run"),
        platform: str = sys.platform,
        clock: Clock = time.monotonic,
        refresh_seconds: float = 60.0,
    ) -> None:
        self._runner = runner
        self._psutil = psutil_module
        self._run_root = run_root
        self._platform = platform
        self._latest = Refresher(self._list, refresh_seconds, clock)

    def collect(self) -> CollectorOutput:
        """Return the service states, listing them again once refresh_seconds have passed."""
        return self._latest.get()

    def _list(self) -> CollectorOutput:
        """List services on this OS and summarise them."""
        if self._platform.startswith("linux"):
            if not services_linux.systemd_running(self._run_root):
                reason = f"systemd is not running (no {self._run_root / 'systemd' / 'system'})"
                log.debug("services: %s", reason)
                return CollectorOutput(info={"available": False, "reason": reason})
            # With systemd running, a systemctl failure is a real one: CommandError propagates.
            return summarise(services_linux.read_services(self._runner))
        if self._platform.startswith("win"):
            records = services_windows.read_service_records(self._psutil)
            output = summarise([services_windows.map_service(r) for r in records])
            # Windows has no "failed" state: list automatic services that are not running,
            # the usual RMM check, without turning them into series (some stop by design).
            output.info["automatic_stopped"] = services_windows.automatic_but_stopped(records)
            return output
        reason = f"services are not collected on {self._platform} yet"
        log.debug("services: %s", reason)
        return CollectorOutput(info={"available": False, "reason": reason})


def summarise(services: list[ServiceState]) -> CollectorOutput:
    """Count services by active state, name the failed ones, and list them all in info."""
    by_state = Counter(s.active for s in services)
    failed = sorted({s.unit for s in services if s.active == "failed"})
    samples = [
        Sample("services_by_state", float(by_state.get(state, 0)), {"state": state})
        for state in sorted(set(BASE_STATES) | set(by_state))
    ]
    samples += [Sample("service_failed", 1.0, {"unit": unit}) for unit in failed]
    info: dict[str, Any] = {
        "services": [
            {"unit": s.unit, "load": s.load, "active": s.active, "sub": s.sub}
            for s in sorted(services, key=lambda s: s.unit)
        ],
        "failed": failed,
    }
    return CollectorOutput(samples=samples, info=info)
