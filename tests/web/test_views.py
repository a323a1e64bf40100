"""The overview computed from agents and alerts: per-site counts, filters, sorting, pages."""

from __future__ import annotations

from rmm_server.storage import AgentRecord
from rmm_server.storage.alerts import AlertRecord
from rmm_server.web.views import PAGE_SIZE, FleetFilter, overview

NOW = 1_800_000_000.0


def agent(index: int, client: str, site: str, online: bool, **kw: object) -> AgentRecord:
    return AgentRecord(
        id=f"{index:032x}",
        credential_hash="x",
        client=client,
        site=site,
        enrolled_at=0.0,
        hostname=f"host-{index:04d}",
        last_seen=NOW - (5 if online else 3600),
        **kw,  # type: ignore[arg-type]
    )


def alert(agent_id: str, severity: str, state: str = "firing") -> AlertRecord:
    return AlertRecord(
        id=f"a-{agent_id}-{severity}", fingerprint="f", rule_key="k", rule_name="R",
        agent_id=agent_id, client="", site="", hostname="", series_labels={}, state=state,
        severity=severity, tier="L1", started_at=NOW, last_active_at=NOW, updated_at=NOW,
    )  # fmt: skip


def test_sites_count_online_offline_firing_and_patch_compliance() -> None:
    agents = [agent(i, "acme", "hq" if i < 3 else "branch", online=i != 1) for i in range(5)]
    agents.append(agent(9, "acme", "hq", online=True, revoked_at=NOW))  # revoked: left out
    alerts = [
        alert(agents[0].id, "critical"),
        alert(agents[0].id, "warning"),
        alert(agents[3].id, "warning"),
        alert(agents[4].id, "critical", "pending"),
    ]
    compliance = {agents[0].id: True, agents[1].id: False, agents[3].id: True}
    view = overview(agents, alerts, NOW, FleetFilter(), compliance)
    assert view.total == 5
    branch, hq = view.sites
    assert (hq.site, hq.online, hq.offline) == ("hq", 2, 1)
    assert hq.firing["critical"] == 1 and hq.firing["warning"] == 1
    assert (hq.patch_listed, hq.patch_compliant) == (2, 1)
    assert (branch.patch_listed, branch.patch_compliant) == (1, 1)
    assert branch.firing["critical"] == 0  # pending is not firing
    assert view.firing["warning"] == 2
    worst = {row.hostname: row.worst for row in view.agents}
    assert worst["host-0000"] == "critical" and worst["host-0004"] == ""


def test_filters_search_sort_and_pages() -> None:
    agents = [
        agent(
            i, f"c{i % 3}", "s", online=i % 2 == 0, tags=["web"] if i % 5 == 0 else [], os="linux"
        )
        for i in range(250)
    ]
    view = overview(agents, [], NOW, FleetFilter(client="c1", status="online"))
    assert view.matched == len([i for i in range(250) if i % 3 == 1 and i % 2 == 0])
    assert all(row.client == "c1" and row.online for row in view.agents)
    assert overview(agents, [], NOW, FleetFilter(q="HOST-012")).matched == 10
    assert overview(agents, [], NOW, FleetFilter(tag="web")).matched == 50
    desc = overview(agents, [], NOW, FleetFilter(sort="hostname", desc=True))
    assert desc.agents[0].hostname == "host-0249" and len(desc.agents) == PAGE_SIZE
    last = overview(agents, [], NOW, FleetFilter(page=99))
    assert last.pages == 3 and len(last.agents) == 50  # past the end: the last page
    assert FleetFilter.from_query({"page": "x", "sort": "nope", "status": "odd"}) == FleetFilter()
