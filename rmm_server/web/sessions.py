"""Dashboard sessions: what an operator's token is exchanged for at login.

A session is a random 256-bit id held in an HttpOnly, SameSite=Strict cookie (Secure over TLS).
It is stored in the server's database (table dashboard_sessions), so a restart keeps operators
logged in and replicas on one database share sessions; the table holds a hash of the id only,
never the cookie's value. Each session's CSRF token, which every state-changing request must
carry back in a form field or header, is derived from the id (so it is stored nowhere either).

Each replica keeps what it read in memory for CACHE_SECONDS: a dashboard's poll every 2 s costs
no query, and a logout or revocation on another replica is seen within that time (at once on the
replica where it happened). A session's use is written back at most every TOUCH_SECONDS.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rmm_common.errors import StorageError
from rmm_server.roles import Role
from rmm_server.storage.dashboard_sessions import SessionRow, SessionStore

log = logging.getLogger(__name__)
COOKIE = "rmm_session"
# Idle sessions end after this long; any session after ABSOLUTE_SECONDS, whatever its use.
IDLE_SECONDS = 30 * 60.0
ABSOLUTE_SECONDS = 12 * 3600.0
# How long a replica trusts what it read of a session before reading it again.
CACHE_SECONDS = 5.0
# How stale a session's stored last use may be: idle expiry after a restart or on another
# replica is early by at most this much, and a busy session costs one write a minute.
TOUCH_SECONDS = 60.0
# Bounded: a flood of logins with a valid token cannot grow the table or memory without end
# (the operator's oldest sessions, and the cache's oldest entries, go first).
MAX_SESSIONS_PER_OPERATOR = 100
MAX_CACHED = 10_000


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


@dataclass(slots=True)
class _Cached:
    session: Session
    read_at: float  # when the row was last read from the database
    stored_last_used: float  # last_used as the database has it


def id_hash(session_id: str) -> str:
    """Return what the database keys a session by: a hash of its id."""
    return hashlib.sha256(b"rmm-session:" + session_id.encode()).hexdigest()


def csrf_of(session_id: str) -> str:
    """Return the session's CSRF token: derived from its id, apart from id_hash (the table's
    content does not give it), and not revealing the id (pages carry it)."""
    digest = hmac.new(session_id.encode(), b"rmm-csrf", hashlib.sha256).digest()
    return digest.hex()


class Sessions:
    """Create, look up and end sessions in the database; expired ones are deleted when met and
    at every login."""

    def __init__(
        self,
        store: SessionStore,
        idle_seconds: float = IDLE_SECONDS,
        absolute_seconds: float = ABSOLUTE_SECONDS,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.store = store
        self.idle_seconds = idle_seconds
        self.absolute_seconds = absolute_seconds
        # Wall-clock time: sessions outlive the process and are shared between hosts.
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.touch_seconds = min(TOUCH_SECONDS, idle_seconds / 10)
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def create(self, operator_id: str, operator: str, role: Role) -> Session:
        """Start a session for an operator who just proved their token (database: blocking)."""
        now = self.clock()
        session_id = secrets.token_urlsafe(32)
        session = Session(
            id=session_id,
            operator_id=operator_id,
            operator=operator,
            role=role,
            csrf=csrf_of(session_id),
            created=now,
            last_used=now,
        )
        self.prune()
        key = id_hash(session_id)
        self.store.insert(
            SessionRow(key, operator_id, operator, role.name.lower(), now, now),
            MAX_SESSIONS_PER_OPERATOR,
        )
        self._remember(key, _Cached(session, now, now))
        return session

    async def get_async(self, session_id: str | None) -> Session | None:
        """get(), without blocking the event loop when the database must be asked."""
        if not session_id:
            return None
        cached = self._from_cache(id_hash(session_id), self.clock())
        if cached is not None:
            return cached
        return await asyncio.to_thread(self.get, session_id)

    def get(self, session_id: str | None) -> Session | None:
        """Return the live session with this id, touching it; None when unknown or expired
        (database: may block)."""
        if not session_id:
            return None
        key = id_hash(session_id)
        now = self.clock()
        cached = self._from_cache(key, now)
        if cached is not None:
            return cached
        with self._lock:
            entry = self._cache.get(key)
        if entry is None or not 0.0 <= now - entry.read_at < self.cache_seconds:
            try:
                row = self.store.get(key)
            except StorageError:
                if entry is None:
                    raise
                # The database is away for a moment: what was read stands until it is back (a
                # logout elsewhere cannot have been written meanwhile either).
                row = SessionRow(
                    key,
                    entry.session.operator_id,
                    entry.session.operator,
                    entry.session.role.name.lower(),
                    entry.session.created,
                    entry.stored_last_used,
                )
            if row is None:
                self._forget(key)
                return None
            last_used = max(row.last_used, entry.session.last_used if entry else row.last_used)
            session = Session(
                id=session_id,
                operator_id=row.operator_id,
                operator=row.operator,
                role=Role.parse(row.role),
                csrf=csrf_of(session_id),
                created=row.created_at,
                last_used=last_used,
            )
            entry = _Cached(session, now, row.last_used)
            self._remember(key, entry)
        session = entry.session
        if self._expired(session, now):
            self._forget(key)
            try:
                self.store.delete(key)
            except StorageError as exc:  # the next login's prune deletes it
                log.warning("expired dashboard session not deleted: %s", exc)
            return None
        session.last_used = now
        if now - entry.stored_last_used >= self.touch_seconds:
            try:
                self.store.touch(key, now)
                entry.stored_last_used = now
            except StorageError as exc:
                log.warning(
                    "dashboard session of %s: use not written (next time): %s",
                    session.operator,
                    exc,
                )
        return session

    def _from_cache(self, key: str, now: float) -> Session | None:
        """The cached session when no query is due (fresh, live, no touch owed), else None."""
        with self._lock:
            entry = self._cache.get(key)
        if (
            entry is None
            or not 0.0 <= now - entry.read_at < self.cache_seconds
            or now - entry.stored_last_used >= self.touch_seconds
            or self._expired(entry.session, now)
        ):
            return None
        entry.session.last_used = now
        return entry.session

    def _expired(self, session: Session, now: float) -> bool:
        return (
            now - session.last_used > self.idle_seconds
            or now - session.created > self.absolute_seconds
        )

    def _remember(self, key: str, entry: _Cached) -> None:
        with self._lock:
            self._cache.pop(key, None)
            while len(self._cache) >= MAX_CACHED:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = entry

    def _forget(self, key: str) -> None:
        with self._lock:
            self._cache.pop(key, None)

    def end(self, session_id: str) -> None:
        """End a session (logout): gone from the database, so on every replica."""
        key = id_hash(session_id)
        self._forget(key)
        self.store.delete(key)

    def end_operator(self, operator_id: str) -> None:
        """End every session of an operator (revoked)."""
        with self._lock:
            for key in [k for k, e in self._cache.items() if e.session.operator_id == operator_id]:
                del self._cache[key]
        self.store.delete_operator(operator_id)

    def prune(self) -> int:
        """Delete every expired session from the database; return how many."""
        now = self.clock()
        return self.store.prune(now - self.idle_seconds, now - self.absolute_seconds)


def csrf_matches(session: Session, offered: str | None) -> bool:
    """Compare a request's CSRF token with the session's in constant time."""
    return bool(offered) and hmac.compare_digest(session.csrf.encode(), (offered or "").encode())
