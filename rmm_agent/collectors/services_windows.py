"""List Windows services through psutil and map their states onto systemd's vocabulary."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from rmm_agent.collectors._common import PsutilModule
from rmm_agent.collectors.services_linux import ServiceState

log = logging.getLogger(__name__)

# Windows service status -> systemd ActiveState; the raw status is kept as the sub-state.
ACTIVE_STATES = {
    "running": "active",
    "paused": "active",
    "start_pending": "activating",
    "continue_pending": "activating",
    "stop_pending": "deactivating",
    "pause_pending": "deactivating",
    "stopped": "inactive",
}


def map_service(record: dict[str, Any]) -> ServiceState:
    """Map a psutil WindowsService.as_dict()-style record to a ServiceState."""
    status = str(record.get("status") or "unknown")
    # The start type plays the part of systemd's load state: automatic, manual, disabled.
    return ServiceState(
        unit=str(record["name"]),
        load=str(record.get("start_type") or "unknown"),
        active=ACTIVE_STATES.get(status, "unknown"),
        sub=status,
    )


def automatic_but_stopped(records: Iterable[dict[str, Any]]) -> list[str]:
    """Return services set to start automatically that are not running."""
    return sorted(
        str(r["name"])
        for r in records
        if r.get("start_type") == "automatic" and r.get("status") == "stopped"
    )


def read_service_records(psutil_module: PsutilModule) -> list[dict[str, Any]]:
    """Read name, status and start type of every Windows service."""
    records = []
    for service in psutil_module.win_service_iter():
        try:
            # status() and start_type() only: as_dict() would also query binpath,
            # description and account of each of some 300 services.
            records.append(
                {
                    "name": service.name(),
                    "status": service.status(),
                    "start_type": service.start_type(),
                }
            )
        except (psutil_module.NoSuchProcess, psutil_module.AccessDenied) as exc:
            log.debug("services: skipping %s: %s", service.name(), exc)
    return records
