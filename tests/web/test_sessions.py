"""Dashboard sessions: idle and absolute expiry, logout, a revoked operator's sessions, CSRF."""

from __future__ import annotations

from rmm_server.roles import Role
from rmm_server.web.sessions import Sessions, csrf_matches


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_session_expires_and_a_used_one_lives_until_its_absolute_end() -> None:
    clock = Clock()
    sessions = Sessions(idle_seconds=60, absolute_seconds=300, clock=clock)
    idle = sessions.create("o1", "ann", Role.VIEWER)
    used = sessions.create("o2", "bob", Role.TIER1)
    for _ in range(4):
        clock.now += 50
        assert sessions.get(used.id) is used
    assert sessions.get(idle.id) is None  # 200 s without a request
    clock.now += 50
    assert sessions.get(used.id) is used  # 250 s old, used 50 s ago
    clock.now += 55
    assert sessions.get(used.id) is None  # past 300 s, however busy
    assert len(sessions) == 0


def test_logout_and_revocation_end_sessions() -> None:
    sessions = Sessions()
    first = sessions.create("o1", "ann", Role.ADMIN)
    second = sessions.create("o1", "ann", Role.ADMIN)
    other = sessions.create("o2", "bob", Role.VIEWER)
    sessions.end(first.id)
    assert sessions.get(first.id) is None and sessions.get(second.id) is second
    sessions.end_operator("o1")
    assert sessions.get(second.id) is None and sessions.get(other.id) is other
    assert sessions.get("") is None and sessions.get(None) is None


def test_csrf_tokens_are_per_session() -> None:
    sessions = Sessions()
    one, two = sessions.create("o1", "a", Role.TIER1), sessions.create("o1", "a", Role.TIER1)
    assert one.csrf not in (two.csrf, one.id)
    assert csrf_matches(one, one.csrf)
    assert (
        not csrf_matches(one, two.csrf)
        and not csrf_matches(one, "")
        and not csrf_matches(one, None)
    )
