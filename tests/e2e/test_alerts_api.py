"""`rmm alerts list` reads the server's alerts with server-side filters."""

from __future__ import annotations

import time

from rmm_server.storage import open_store
from rmm_server.storage.alerts import AlertRecord, AlertStore
from rmm_server.storage.store import sqlite_url
from tests.helpers import ServerProcess, rmm, rmm_json


def alert(alert_id: str, state: str, severity: str, client: str) -> AlertRecord:
    now = time.time()
    return AlertRecord(
        id=alert_id,
        fingerprint=f"fp-{alert_id}",
        rule_key="servers/DiskLow",
        rule_name="DiskLow",
        agent_id="agent1",
        client=client,
        site="hq",
        hostname="web01",
        series_labels={"mountpoint": "/"},
        state=state,
        severity=severity,
        tier="L1",
        started_at=now - 600,
        last_active_at=now,
        updated_at=now,
        fired_at=now - 300 if state != "pending" else None,
        resolved_at=now if state == "resolved" else None,
        value=0.97,
        annotations={"summary": "/ is 97% full"},
    )


def test_alerts_list_filters_by_state_client_and_severity(server: ServerProcess) -> None:
    store = open_store(sqlite_url(server.data_dir))
    AlertStore(store).save(
        [
            alert("a1", "firing", "critical", "acme"),
            alert("a2", "pending", "warning", "acme"),
            alert("a3", "resolved", "warning", "acme"),
            alert("a4", "firing", "warning", "globex"),
        ]
    )
    store.close()
    assert {a["id"] for a in rmm_json(server, "alerts", "list")} == {"a1", "a2", "a4"}
    firing = rmm_json(server, "alerts", "list", "--state", "firing", "--client", "acme")
    assert [a["id"] for a in firing] == ["a1"]
    assert firing[0]["labels"] == {"mountpoint": "/"} and firing[0]["value"] == 0.97
    assert [
        a["id"]
        for a in rmm_json(server, "alerts", "list", "--severity", "warning", "--state", "resolved")
    ] == ["a3"]
    table = rmm(server, "alerts", "list", "--state", "firing").stdout
    assert "DiskLow" in table and "/ is 97% full" in table
