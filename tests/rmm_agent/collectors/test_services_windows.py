"""Test the mapping of Windows services onto systemd's states."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from rmm_agent.collectors.services_linux import ServiceState
from rmm_agent.collectors.services_windows import (
    automatic_but_stopped,
    map_service,
    read_service_records,
)

from .helpers import fixture_text


def records() -> list[dict[str, Any]]:
    return list(json.loads(fixture_text("win_service_iter_as_dict_win11.json")))


class FakeService:
    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def name(self) -> str:
        return str(self.record["name"])

    def status(self) -> str:
        if self.record["name"] == "svsvc":
            raise NoSuchProcess("service svsvc was deleted")
        return str(self.record["status"])

    def start_type(self) -> str:
        return str(self.record["start_type"])


class NoSuchProcess(Exception):
    pass


class AccessDenied(Exception):
    pass


def fake_psutil() -> SimpleNamespace:
    return SimpleNamespace(
        win_service_iter=lambda: (FakeService(r) for r in records()),
        NoSuchProcess=NoSuchProcess,
        AccessDenied=AccessDenied,
    )


def test_map_service_states() -> None:
    mapped = {s.unit: s for s in map(map_service, records())}
    assert mapped["Audiosrv"] == ServiceState("Audiosrv", "automatic", "active", "running")
    assert mapped["BITS"] == ServiceState("BITS", "manual", "inactive", "stopped")
    assert mapped["TrustedInstaller"].active == "activating"
    assert mapped["svsvc"].active == "deactivating"
    assert mapped["Themes"] == ServiceState("Themes", "automatic", "active", "paused")


def test_automatic_but_stopped() -> None:
    assert automatic_but_stopped(records()) == ["Spooler", "edgeupdate"]


def test_read_service_records_skips_vanished_services() -> None:
    read = read_service_records(fake_psutil())
    assert [r["name"] for r in read] == [r["name"] for r in records() if r["name"] != "svsvc"]
    assert read[0] == {"name": "Audiosrv", "status": "running", "start_type": "automatic"}
