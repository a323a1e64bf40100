"""Contract and trend reports on SQLite and PostgreSQL, checked against figures worked out by
hand: offline periods recorded by the real recorder on a controlled clock, maintenance windows
(one-off and recurring) excluded from both sides, alerts against SLA targets (24x7 and business
hours), tickets by tier, block hours; trends ranked against the period before."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, update

from rmm_common.errors import InvalidArgument, NotFound
from rmm_server.cluster import Cluster
from rmm_server.desk.availability import OfflineRecorder
from rmm_server.desk.contracts import Contracts, ContractTerms
from rmm_server.desk.places import Places
from rmm_server.desk.report_html import render_html
from rmm_server.desk.reports import Reports, availability, merged, occurrences
from rmm_server.desk.tickets import Tickets
from rmm_server.fleet import Fleet
from rmm_server.roles import Role
from rmm_server.storage import Store, open_store, schema
from rmm_server.storage.alerts import AlertRecord, AlertStore
from rmm_server.storage.availability import AvailabilityStore
from rmm_server.storage.desk import SlaTarget
from rmm_server.storage.suppressions import MaintenanceWindow, SuppressionStore

HOUR = 3600.0
MINUTE = 60.0


def utc(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = utc(11, 1)

    def __call__(self) -> float:
        return self.now


A1, A2, A3 = (uuid.UUID(int=n).hex for n in (1, 2, 3))


def add_agent(store: Store, agent_id: str, host: str, enrolled_at: float) -> None:
    with store.transaction("add an agent") as conn:
        conn.execute(
            insert(schema.agents).values(
                id=agent_id,
                credential_hash="x",
                client="acme",
                site="hq",
                hostname=host,
                enrolled_at=enrolled_at,
                interval_seconds=30,
            )
        )


def seen(store: Store, agent_id: str, at: float) -> None:
    """The agent reports at `at`: a stored report and its last_seen, as ingest writes them."""
    with store.transaction("store a report") as conn:
        conn.execute(
            insert(schema.reports).values(
                agent_id=agent_id,
                sequence=int(at),
                collected_at=at,
                received_at=at,
                body=zlib.compress(b""),
            )
        )
        conn.execute(
            update(schema.agents).where(schema.agents.c.id == agent_id).values(last_seen=at)
        )


def alert(
    n: int, severity: str, fired: float, acked: float | None, resolved: float | None, **kw: str
) -> AlertRecord:
    return AlertRecord(
        id=f"al{n}",
        fingerprint=f"f{n}",
        rule_key=kw.get("rule", "DiskFull"),
        rule_name=kw.get("rule", "DiskFull"),
        agent_id=kw.get("agent", A1),
        client=kw.get("client", "acme"),
        site="hq",
        hostname=kw.get("host", "web1"),
        series_labels={},
        state="resolved" if resolved else "firing",
        severity=severity,
        tier="L1",
        started_at=fired,
        last_active_at=fired,
        updated_at=fired,
        fired_at=fired,
        resolved_at=resolved,
        acknowledged_at=acked,
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture
def month(store: Store) -> tuple[Store, Clock]:
    """November 2026 of client acme (site hq, UTC), as worked out in the tests below."""
    clock = Clock()
    clock.now = utc(10, 1)
    places = Places(store, Fleet(), Cluster("local"), clock)
    places.create_client("acme", "admin")
    places.create_client("globex", "admin")
    places.create_site("acme", "hq", "UTC", "admin")
    Contracts(store, clock).create(
        "acme",
        ContractTerms(
            type="block-hours",
            hours_per_period=10,
            sla={
                "critical": SlaTarget(30 * MINUTE, 4 * HOUR, "24x7"),
                "warning": SlaTarget(HOUR, 8 * HOUR, "business"),
            },
        ),
        "admin",
    )
    add_agent(store, A1, "web1", utc(10, 1))
    add_agent(store, A2, "web2", utc(10, 1))
    add_agent(store, A3, "web3", utc(11, 16))  # enrolled mid-month: 15 days count
    windows = SuppressionStore(store)
    # web1: a one-off 2 h window, Nov 10 03:00-05:00; web2: every Sunday 02:00 for 1 h
    # (Nov 1, 8, 15, 22, 29: 5 h); web3: a window made after its outage excuses nothing.
    windows.add_window(
        MaintenanceWindow.create(
            id="w1",
            name="disk swap",
            duration_seconds=2 * HOUR,
            timezone="UTC",
            created_by="t",
            created_at=utc(10, 20),
            start_at=utc(11, 10, 3),
            agents=(A1,),
        )
    )
    windows.add_window(
        MaintenanceWindow.create(
            id="w2",
            name="sundays",
            duration_seconds=HOUR,
            timezone="UTC",
            created_by="t",
            created_at=utc(10, 20),
            schedule="0 2 * * sun",
            agents=(A2,),
        )
    )
    windows.add_window(
        MaintenanceWindow.create(
            id="w3",
            name="afterwards",
            duration_seconds=24 * HOUR,
            timezone="UTC",
            created_by="t",
            created_at=utc(12, 2),
            start_at=utc(11, 30),
            agents=(A3,),
        )
    )
    # web1 reports until Nov 10 01:00, is offline 3 h (1 h of it inside its window) and
    # reports again at 04:00; web3's last report is Nov 30 12:00 and it never came back.
    recorder = OfflineRecorder(store, clock, not_before=utc(11, 1))

    def check(*ids: str) -> tuple[int, int]:
        return recorder.check([a for a in map(store.get_agent, ids) if a is not None])

    seen(store, A1, utc(11, 10, 1))
    clock.now = utc(11, 10, 1, 1)
    assert check(A1) == (0, 0)  # 60 s: within its three 30 s intervals
    clock.now = utc(11, 10, 1, 10)
    assert check(A1) == (1, 0)
    clock.now = utc(11, 10, 2)
    assert check(A1) == (0, 0)  # one period, however many checks see it offline
    seen(store, A1, utc(11, 10, 4))
    seen(store, A1, utc(11, 10, 4, 1))
    clock.now = utc(11, 10, 4, 2)
    assert check(A1) == (0, 1)  # back from its first report after the outage, 04:00
    seen(store, A3, utc(11, 30, 12))
    clock.now = utc(11, 30, 12, 10)
    assert check(A3) == (1, 0)
    return store, clock


def test_availability_excludes_maintenance_from_both_sides_and_counts_enrolled_time(
    month: tuple[Store, Clock],
) -> None:
    store, clock = month
    clock.now = utc(12, 7)
    report = Reports(store, clock).contract("acme", "2026-11")
    assert (report["month"], report["time_zone"], report["complete"]) == ("2026-11", "UTC", True)
    assert report["end"] - report["start"] == 720 * HOUR
    rows = {row["hostname"]: row for row in report["availability"]["agents"]}
    # web1: 720 h, 2 h planned, offline 3 h of which 1 h planned.
    assert rows["web1"]["maintenance_seconds"] == 2 * HOUR
    assert rows["web1"]["offline_seconds"] == 2 * HOUR
    assert rows["web1"]["availability"] == pytest.approx((720 - 2 - 2) / (720 - 2))
    # web2: five Sunday hours planned, never offline.
    assert rows["web2"]["maintenance_seconds"] == 5 * HOUR
    assert rows["web2"]["availability"] == 1.0
    # web3: enrolled Nov 16 (360 h), offline from Nov 30 12:00 to the month's end (12 h); the
    # window made on Dec 2 covering Nov 30 excuses nothing.
    assert rows["web3"]["enrolled_seconds"] == 360 * HOUR
    assert rows["web3"]["maintenance_seconds"] == 0
    assert rows["web3"]["availability"] == pytest.approx((360 - 12) / 360)
    overall = (720 - 4 + 720 - 5 + 360 - 12) / (718 + 715 + 360)
    assert report["availability"]["overall"] == pytest.approx(overall)
    # The page escapes what agents report of themselves.
    rows["web1"]["hostname"] = "<script>alert(1)</script>"
    page = render_html(report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "99.721 %" in page  # (720 - 2 - 2) / (720 - 2)
    # The current month counts up to now: web3 has been offline since Nov 30 12:00.
    december = Reports(store, clock).contract("acme", "2026-12")
    assert december["complete"] is False
    (web3,) = (r for r in december["availability"]["agents"] if r["hostname"] == "web3")
    assert web3["availability"] == 0.0 and web3["offline_seconds"] == 6 * 24 * HOUR


def test_alerts_against_sla_tickets_by_tier_and_block_hours(month: tuple[Store, Clock]) -> None:
    store, clock = month
    AlertStore(store).save(
        [
            # critical, 30 min / 4 h 24x7: met both; late both; resolved in 20 min unacked.
            alert(1, "critical", utc(11, 3, 10), utc(11, 3, 10, 10), utc(11, 3, 12)),
            alert(2, "critical", utc(11, 4, 10), utc(11, 4, 11), utc(11, 4, 15)),
            alert(3, "critical", utc(11, 5, 10), None, utc(11, 5, 10, 20)),
            # warning, 1 h / 8 h business (mon-fri 08-18): fired Friday 17:30, acknowledged
            # Monday 08:20: 50 business minutes, met; never resolved: missed.
            alert(4, "warning", utc(11, 6, 17, 30), utc(11, 9, 8, 20), None),
            alert(5, "critical", utc(10, 30, 10), None, None),  # October
            alert(6, "critical", utc(11, 3, 10), None, None, client="globex"),
        ]
    )
    tickets = Tickets(store, clock)
    clock.now = utc(10, 31, 23)
    tickets.open("acme", "from October", "info", "bob")
    clock.now = utc(11, 2, 9)
    first = tickets.open("acme", "VPN", "warning", "bob")
    second = tickets.open("acme", "Printer", "info", "bob")
    tickets.open("acme", "Disk", "critical", "bob", tier="L2")
    tickets.log_time(first.id, 90, "", "bob")
    tickets.resolve(first.id, "fixed", "bob")
    tickets.resolve(second.id, "fixed", "bob")
    tickets.close(second.id, Role.TIER1, "bob")
    clock.now = utc(12, 7)
    report = Reports(store, clock).contract("acme", "2026-11")
    critical = report["alerts"]["critical"]
    assert critical["count"] == 3 and critical["acknowledged"] == 3
    assert critical["acknowledge_median_seconds"] == 20 * MINUTE
    assert critical["acknowledge_p90_seconds"] == HOUR
    assert critical["resolve_median_seconds"] == 2 * HOUR
    assert critical["resolve_p90_seconds"] == 5 * HOUR
    sla = critical["sla"]
    assert (sla["acknowledge_met"], sla["acknowledge_missed"], sla["acknowledge_open"]) == (2, 1, 0)
    assert (sla["resolve_met"], sla["resolve_missed"]) == (2, 1)
    warning = report["alerts"]["warning"]
    assert warning["count"] == 1 and warning["sla"]["clock"] == "business"
    assert (warning["sla"]["acknowledge_met"], warning["sla"]["resolve_missed"]) == (1, 1)
    assert report["alerts"]["info"] == {
        **report["alerts"]["info"],
        "count": 0,
        "sla": None,
    }
    assert report["tickets"]["L1"] == {"opened": 2, "resolved": 2, "closed": 1, "sla_breached": 0}
    assert report["tickets"]["L2"]["opened"] == 1 and report["tickets"]["L3"]["opened"] == 0
    hours = report["hours"]
    assert (hours["used"], hours["included"], hours["left"]) == (1.5, 10, 8.5)


def test_bad_input_is_named(month: tuple[Store, Clock]) -> None:
    store, clock = month
    reports = Reports(store, clock)
    with pytest.raises(NotFound, match="nobody"):
        reports.contract("nobody", "2026-11")
    for bad in ("2026-13", "11-2026", "2026/11", ""):
        with pytest.raises(InvalidArgument, match="YYYY-MM"):
            reports.contract("acme", bad)
    with pytest.raises(InvalidArgument, match="has not begun"):
        reports.contract("acme", "2027-01")
    with pytest.raises(InvalidArgument, match="time zone"):
        reports.contract("acme", "2026-11", time_zone="Mars/Olympus")
    with pytest.raises(InvalidArgument, match="--since"):
        reports.trends(0)
    with pytest.raises(NotFound, match="nobody"):
        reports.trends(86400, client="nobody")
    # A client without a contract or agents: a report with nothing to hold against.
    clock.now = utc(12, 7)
    bare = reports.contract("globex", "2026-11")
    assert bare["contract"] is None and bare["availability"]["overall"] is None
    assert bare["hours"]["included"] is None and bare["alerts"]["critical"]["sla"] is None


def test_no_outage_begins_within_the_grace_after_the_server_starts(store: Store) -> None:
    clock = Clock()
    Places(store, Fleet(), Cluster("local"), clock).create_client("acme", "admin")
    add_agent(store, A1, "web1", utc(10, 1))
    seen(store, A1, utc(10, 31, 23))  # the server was down from then until Nov 1
    recorder = OfflineRecorder(store, clock, not_before=utc(11, 1, 0, 2))
    agent = store.get_agent(A1)
    assert agent is not None
    assert recorder.check([agent]) == (0, 0)
    clock.now = utc(11, 1, 0, 3)  # past the grace and still not reporting: an outage
    assert recorder.check([agent]) == (1, 0)
    assert AvailabilityStore(store).open_periods() == {A1: utc(10, 31, 23)}


def test_trends_rank_by_count_against_the_period_before(month: tuple[Store, Clock]) -> None:
    store, clock = month
    clock.now = utc(12, 7)
    day = 24 * HOUR
    now = clock.now
    saved = [
        alert(10 + n, "warning", now - (n + 1) * HOUR, None, None, rule="DiskFull")
        for n in range(3)
    ]
    saved += [alert(20, "warning", now - day, None, None, rule="CpuHigh", host="web2", agent=A2)]
    saved += [
        alert(30 + n, "warning", now - 7 * day - (n + 1) * HOUR, None, None, rule="CpuHigh")
        for n in range(4)
    ]
    saved += [alert(40, "critical", now - 2 * HOUR, None, None, client="globex", host="db")]
    AlertStore(store).save(saved)
    tickets = Tickets(store, clock)
    clock.now = now - day
    for category in ("printing", "printing", "", " printing "):
        tickets.open("acme", "a problem", "info", "bob", category=category)
    tickets.open("acme", "disk", "warning", "alert", alert_id="al10")  # its rule: DiskFull
    with pytest.raises(InvalidArgument, match="category"):
        tickets.open("acme", "x", "info", "bob", category="a\nb")
    clock.now = now
    trends = Reports(store, clock).trends(7 * day)
    assert [(c["category"], c["count"]) for c in trends["ticket_categories"]] == [
        ("printing", 3),
        ("(none)", 1),
        ("DiskFull", 1),
    ]
    assert [(r["rule"], r["count"], r["previous"]) for r in trends["alert_rules"]] == [
        ("DiskFull", 4, 0),
        ("CpuHigh", 1, 4),
    ]
    assert trends["alert_rules"][1]["change"] == -3
    assert [(c["client"], c["count"]) for c in trends["clients"]] == [("acme", 4), ("globex", 1)]
    assert trends["hosts"][0]["hostname"] == "web1" and trends["hosts"][0]["count"] == 3
    acme = Reports(store, clock).trends(7 * day, client="acme", limit=1)
    assert [r["rule"] for r in acme["alert_rules"]] == ["DiskFull"]


def test_intervals() -> None:
    assert merged([(5, 6), (1, 3), (2, 4), (7, 7)]) == [(1, 4), (5, 6)]
    # Everything planned: nothing counts, so no ratio rather than a division by zero.
    assert availability((0, 10), [(0, 10)], [(2, 3)]) == (10, 10, 0, None)
    window = MaintenanceWindow.create(
        id="w",
        name="n",
        duration_seconds=HOUR,
        timezone="Europe/Berlin",
        created_by="t",
        created_at=0.0,
        schedule="0 2 * * *",
        ended_at=utc(11, 3, 1, 30),
    )
    # Daily at 02:00 Berlin (01:00 UTC in November), ended at 01:30 UTC on Nov 3.
    assert occurrences(window, utc(11, 1), utc(12, 1)) == [
        (utc(11, 1, 1), utc(11, 1, 2)),
        (utc(11, 2, 1), utc(11, 2, 2)),
        (utc(11, 3, 1), utc(11, 3, 1, 30)),
    ]
