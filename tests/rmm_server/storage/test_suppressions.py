"""Silences match alerts; maintenance windows follow the site's wall clock across DST."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

import pytest

from rmm_common.errors import InvalidArgument
from rmm_server.storage import open_store
from rmm_server.storage.suppressions import (
    MaintenanceWindow,
    Silence,
    SuppressionStore,
    check_silence_scope,
    parse_matchers,
)
from tests.databases import tamper


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def window(
    schedule: str = "0 2 * * *",
    hours: float = 2,
    zone: str = "America/New_York",
    **scope: tuple[str, ...],
) -> MaintenanceWindow:
    return MaintenanceWindow.create(
        id="w1",
        name="nightly",
        schedule=schedule,
        duration_seconds=hours * 3600,
        timezone=zone,
        created_by="admin",
        created_at=0.0,
        **scope,
    )


def test_matchers_parse_and_match() -> None:
    matchers = parse_matchers("rule=DiskLow, client=acme,mountpoint=~/var.*,site!=lab")
    fields = {"rule": "DiskLow", "client": "acme", "mountpoint": "/var/log", "site": "hq"}
    assert all(m.matches(fields) for m in matchers)
    assert not all(m.matches({**fields, "site": "lab"}) for m in matchers)
    silence = Silence(
        "s1",
        tuple(matchers),
        starts_at=100,
        ends_at=200,
        created_by="bob",
        comment="disk swap",
        created_at=100,
    )
    assert silence.silences(fields, 150)
    assert not silence.silences(fields, 200), "ends_at is exclusive"
    for bad in ("", "rule", "x=~[", "=v"):
        with pytest.raises(InvalidArgument):
            parse_matchers(bad)


def test_window_follows_local_time_across_the_spring_forward_change() -> None:
    nightly = window()
    # Saturday 7 March 2026, EST (UTC-5): 02:00-04:00 local is 07:00-09:00 UTC.
    assert nightly.current(utc(2026, 3, 7, 6, 59)) is None
    assert nightly.current(utc(2026, 3, 7, 7, 30)) == (utc(2026, 3, 7, 7), utc(2026, 3, 7, 9))
    assert nightly.current(utc(2026, 3, 7, 9, 0)) is None
    # Monday 9 March 2026, EDT (UTC-4): the same local window is 06:00-08:00 UTC.
    assert nightly.current(utc(2026, 3, 9, 6, 30)) == (utc(2026, 3, 9, 6), utc(2026, 3, 9, 8))
    assert nightly.current(utc(2026, 3, 9, 8, 30)) is None
    # On the night itself 02:00 does not exist: the window starts when the clock jumps.
    started = nightly.current(utc(2026, 3, 8, 7, 30))
    assert started is not None and started[0] == utc(2026, 3, 8, 7)


def test_window_across_the_fall_back_change_and_next_start() -> None:
    nightly = window(schedule="30 1 * * *", hours=1)
    # Sunday 1 November 2026: 01:30 local happens twice; one window, at the first 01:30 (EDT).
    assert nightly.current(utc(2026, 11, 1, 5, 45)) == (
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6, 30),
    )
    assert nightly.next_start(utc(2026, 11, 2, 0)) == utc(2026, 11, 2, 6, 30)  # EST now


def test_window_scope_and_end() -> None:
    scoped = window(clients=("acme",), tags=("server",))
    assert scoped.covers("acme", "hq", "a1", frozenset({"server", "linux"}))
    assert not scoped.covers("acme", "hq", "a1", frozenset({"workstation"}))
    assert not scoped.covers("globex", "hq", "a1", frozenset({"server"}))
    one_off = MaintenanceWindow.create(
        id="w2",
        name="swap disk",
        start_at=1000.0,
        duration_seconds=600,
        timezone="UTC",
        created_by="admin",
        created_at=0.0,
        ended_at=1300.0,
    )
    assert one_off.current(1200) == (1000, 1600)
    assert one_off.current(1300) is None, "ended early"
    for bad in ({"timezone": "Mars/Olympus"}, {"duration_seconds": 0}, {"schedule": "61 * * * *"}):
        values = {
            "id": "x",
            "name": "x",
            "schedule": "0 2 * * *",
            "duration_seconds": 60.0,
            "timezone": "UTC",
            "created_by": "a",
            "created_at": 0.0,
            **bad,
        }
        with pytest.raises(InvalidArgument):
            MaintenanceWindow.create(**values)


def test_a_new_silence_by_hostname_must_pin_the_client() -> None:
    # Any agent of any client can report a hostname: alone it would silence every client's.
    for text in ("hostname=web-01", "hostname=~web-.*,rule=DiskLow", "hostname=web-01,client!=b"):
        with pytest.raises(InvalidArgument, match=r"client=NAME.*agent=ID"):
            check_silence_scope(parse_matchers(text))
    check_silence_scope(parse_matchers("hostname=web-01,client=acme"))
    check_silence_scope(parse_matchers("rule=DiskLow,agent=3f9c"))
    pinned = Silence("s", tuple(parse_matchers("hostname=web-01,client=acme")), 0, 10, "a", "", 0)
    assert pinned.silences({"hostname": "web-01", "client": "acme"}, 5)
    assert not pinned.silences({"hostname": "web-01", "client": "evil"}, 5)


def test_silences_and_windows_stored_by_an_earlier_release_are_flagged_not_obeyed(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows as a release before the client= and full-id rules wrote them, read back: a
    hostname-only silence would quiet every client's host of that name, so it quiets nothing
    and says why; a window naming a hostname covers nothing, and says so."""
    store = open_store(db_url)
    try:
        agent_id = "0123456789abcdef0123456789abcdef"
        with tamper(store.engine) as conn:
            for sid, matchers in (
                ("old-host", "hostname=web-01"),
                ("old-agent", "agent=web-01"),
                ("good", f"hostname=web-01,client=acme,agent={agent_id}"),
            ):
                conn.execute(
                    "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (sid, matchers, 0.0, time.time() + 3600, "bob", "", 0.0),
                )
            conn.execute(
                "INSERT INTO maintenance_windows (id, name, schedule, start_at, duration_seconds,"
                " timezone, scope, created_by, comment, created_at, ended_at) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("w-old", "patch", "", 0.0, 1e9, "UTC", json.dumps({"agents": ["web-01"]}),
                 "bob", "", 0.0, None),
            )  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="rmm_server.storage.suppressions"):
            suppressions = SuppressionStore(store)
            silences = {s.id: s for s in suppressions.silences()}
            windows = suppressions.windows()
            suppressions.silences()  # a refresh does not say it again
        fields = {"hostname": "web-01", "client": "evil", "agent": agent_id}
        assert not silences["old-host"].silences(fields, time.time())
        assert "picks agents by hostname" in silences["old-host"].problem
        assert "rmm silences expire old-host" in silences["old-host"].problem
        assert not silences["old-agent"].active(time.time())
        assert "'agent=web-01' is not a full agent id" in silences["old-agent"].problem
        assert silences["good"].silences({**fields, "client": "acme"}, time.time())
        assert not silences["good"].problem
        warned = [
            r.getMessage() for r in caplog.records if r.name == "rmm_server.storage.suppressions"
        ]
        assert len(warned) == 3, warned
        assert any("silence old-host was stored by an earlier release" in m for m in warned)
        assert any(
            "maintenance window w-old was stored by an earlier release and names 'web-01'" in m
            for m in warned
        )
        assert not windows[0].covers("acme", "hq", agent_id, frozenset())
    finally:
        store.close()
