"""The patch metrics on the server's registry, from the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rmm_server.fleet import Fleet
from rmm_server.patching.inventory import PatchInventory
from rmm_server.patching.metrics import PatchMetrics
from rmm_server.patching.model import APPROVE, EVERYWHERE
from rmm_server.storage import Store, open_store
from tests.rmm_server.patching.test_inventory import Clock, Host, agent, pkg


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def test_compliance_reboot_and_installs_are_exported(store: Store) -> None:
    clock = Clock()
    fleet = Fleet()
    agents = [agent("a1"), agent("a2"), agent("a3", site="branch")]
    for record in agents:
        fleet.add(record)
    registry = CollectorRegistry()
    inventory = PatchInventory(
        store, fleet.get, clock=clock, agents=lambda: [s.record for s in fleet.snapshot()]
    )
    ticks = [0.0]
    metrics = PatchMetrics(
        registry, inventory.patches, fleet, clock=clock, monotonic=lambda: ticks[0]
    )
    inventory.on_outcome = metrics.count

    # No agent has a patch state yet: the families are there, empty; the counter at zero.
    text = generate_latest(registry).decode()
    assert "# TYPE rmm_patch_compliance_ratio gauge" in text
    assert "# TYPE rmm_reboot_pending gauge" in text
    assert 'rmm_patch_installs_total{result="installed"} 0.0' in text

    asyncio.run(inventory.observe(agents[0], Host(agents[0], clock, [pkg("openssl")]).report(1)))
    asyncio.run(inventory.observe(agents[1], Host(agents[1], clock, [pkg("curl")]).report(0)))
    asyncio.run(inventory.observe(agents[2], Host(agents[2], clock, []).report(0)))
    inventory.record_decisions(["apt:openssl"], APPROVE, [(EVERYWHERE, "")], "op")
    metrics.count("installed")

    # Cached for the ttl: the old (empty) families until it passes.
    assert "rmm_patch_compliance_ratio{" not in generate_latest(registry).decode()
    ticks[0] += 60.0
    text = generate_latest(registry).decode()
    # hq: a1 misses its approved openssl, a2 misses nothing approved; branch: a3 lists nothing.
    assert 'rmm_patch_compliance_ratio{client="acme",site="hq"} 0.5' in text
    assert 'rmm_patch_compliance_ratio{client="acme",site="branch"} 1.0' in text
    assert 'rmm_reboot_pending{agent="a1",client="acme",site="hq"} 1.0' in text
    assert 'rmm_reboot_pending{agent="a2",client="acme",site="hq"} 0.0' in text
    assert 'rmm_patch_installs_total{result="installed"} 1.0' in text
