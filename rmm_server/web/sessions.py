"""Dashboard sessions: what an operator's token is exchanged for at login.

A session is a random 256-bit id held in an HttpOnly, SameSite=Strict cookie (Secure over TLS),
kept in this process's memory only: a server restart logs everyone out, and with replicas an
operator stays on the replica that logged them in (docs/dashboard.md). Each session has its own
CSRF token, which every state-changing request must carry back in a form field or header.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rmm_server.roles import Role

COOKIE = "rmm_session"
# Idle sessions end after this long; any session after ABSOLUTE_SECONDS, whatever its use.
IDLE_SECONDS = 30 * 60.0
ABSOLUTE_SECONDS = 12 * 3600.0
# Bounded: a flood of logins with valid tokens cannot grow memory without end (oldest dropped).
MAX_SESSIONS = 10_000


@dataclass(slots=True)
class Session:
    """One operator logged in to the dashboard."""

    id: str
    operator_id: str
    operator: str
    role: Role
    csrf: str
    created: float
    last_used: float

    def may(self, needed: Role) -> bool:
        """Say whether this operator's role is at least `needed`."""
        return self.role >= needed


class Sessions:
    """Create, look up and end sessions; expired ones are forgotten when met."""

    def __init__(
        self,
        idle_seconds: float = IDLE_SECONDS,
        absolute_seconds: float = ABSOLUTE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.absolute_seconds = absolute_seconds
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, operator_id: str, operator: str, role: Role) -> Session:
        """Start a session for an operator who just proved their token."""
        now = self.clock()
        session = Session(
            id=secrets.token_urlsafe(32),
            operator_id=operator_id,
            operator=operator,
            role=role,
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_used=now,
        )
        with self._lock:
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """Return the live session with this id, touching it; None when unknown or expired."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if (
                now - session.last_used > self.idle_seconds
                or now - session.created > self.absolute_seconds
            ):
                del self._sessions[session_id]
                return None
            session.last_used = now
            return session

    def end(self, session_id: str) -> None:
        """Forget a session (logout)."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def end_operator(self, operator_id: str) -> None:
        """Forget every session of an operator (revoked)."""
        with self._lock:
            for key in [k for k, s in self._sessions.items() if s.operator_id == operator_id]:
                del self._sessions[key]


def csrf_matches(session: Session, offered: str | None) -> bool:
    """Compare a request's CSRF token with the session's in constant time."""
    return bool(offered) and hmac.compare_digest(session.csrf.encode(), (offered or "").encode())
