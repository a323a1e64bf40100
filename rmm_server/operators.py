"""Operator identities: the first admin, and checking an operator's bearer token."""

from __future__ import annotations

import builtins
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from rmm_common.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from rmm_common.files import write_private
from rmm_common.tokens import SecretKind, hash_secret, make_secret, new_ident, parse_secret
from rmm_common.tokens import secret_matches as _matches
from rmm_server.roles import Role
from rmm_server.storage import OperatorRecord, Store
from rmm_server.storage.operators import OperatorStore

log = logging.getLogger(__name__)
ADMIN_TOKEN_FILE = "admin.token"
# How long a looked-up operator is trusted without reading it again: a revoke through this
# server or another replica (announced) drops it at once; one made in the database by hand
# within this time.
CACHE_SECONDS = 5.0
# Names appear in the audit log beside "server" and "policy:<rule>", so they cannot look like it.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
RESERVED_NAMES = frozenset({"server", "system"})


class Operators:
    """Look up operators by token; keep a small cache so each call costs no query."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.table = OperatorStore(store)
        self._cache: dict[str, tuple[OperatorRecord, float]] = {}
        self._lock = threading.Lock()  # one add or revoke at a time: name checks stay true
        self._revokes = 0  # bumped by each revoke: a lookup that raced one is not cached
        # Told the id of each operator revoked here (replicas: the others forget it at once).
        self.revoked: Callable[[str], None] | None = None

    def bootstrap_admin(self, data_dir: Path) -> Path | None:
        """On a server without operators, create `admin` and write its token (mode 0600)."""
        if self.store.count_operators() > 0:
            return None
        operator_id = new_ident()
        secret = make_secret(SecretKind.OPERATOR, operator_id)
        path = data_dir / ADMIN_TOKEN_FILE
        # Written before the operator exists: a crash in between leaves a useless file that the
        # next start overwrites, never an admin nobody can log in as.
        write_private(path, (secret + "\n").encode())
        try:
            self.store.create_operator(
                OperatorRecord(
                    id=operator_id,
                    name="admin",
                    role=Role.ADMIN.name.lower(),
                    token_hash=hash_secret(secret),
                    created_at=self.clock(),
                )
            )
        except AlreadyExists:
            # Another replica on the same fresh PostgreSQL created admin between our count and
            # our insert: its token is the valid one, ours would only mislead.
            with contextlib.suppress(FileNotFoundError):
                if path.read_text().strip() == secret:
                    path.unlink()
            log.warning(
                "operator admin was created by another server replica at the same time: its "
                "token is in that replica's data directory (%s here holds none)",
                ADMIN_TOKEN_FILE,
            )
            return None
        log.info("created operator admin; its token is in %s", path)
        return path

    def authenticate(self, secret: str) -> OperatorRecord:
        """Return the operator whose token `secret` is, or raise Unauthenticated."""
        parsed = parse_secret(secret, SecretKind.OPERATOR)
        now = time.monotonic()
        cached = self._cache.get(parsed.ident)
        revokes = self._revokes
        if cached is not None and now - cached[1] < CACHE_SECONDS:
            record: OperatorRecord | None = cached[0]
        else:
            record = self.store.get_operator(parsed.ident)
        if record is None or not _matches(parsed.secret, record.token_hash):
            raise Unauthenticated("operator token not recognised: check RMM_TOKEN or --token")
        if record.revoked_at is not None:
            self._cache.pop(parsed.ident, None)
            raise Unauthenticated(f"operator {record.name!r} has been revoked")
        if (cached is None or cached[0] is not record) and revokes == self._revokes:
            self._cache[parsed.ident] = (record, now)
        return record

    def add(self, name: str, role: str, created_by: str) -> tuple[OperatorRecord, str]:
        """Create an operator; return it and its token (shown once, only its hash is kept)."""
        name = name.strip()
        if not NAME_PATTERN.fullmatch(name) or name.lower() in RESERVED_NAMES:
            raise InvalidArgument(
                f"operator name {name!r} is not allowed: use 1-64 letters, digits, '.', '_', "
                "'@' or '-', starting with a letter or digit (not 'server' or 'system')"
            )
        parsed_role = Role.parse(role)
        with self._lock:
            taken = self.table.find(name)
            if taken is not None and taken.name.lower() == name.lower():
                state = "revoked" if taken.revoked_at is not None else "active"
                raise AlreadyExists(
                    f"operator {taken.name!r} exists already ({state}); names stay taken after "
                    "a revoke so the audit log stays unambiguous: choose another name"
                )
            operator_id = new_ident()
            secret = make_secret(SecretKind.OPERATOR, operator_id)
            record = OperatorRecord(
                id=operator_id,
                name=name,
                role=parsed_role.name.lower(),
                token_hash=hash_secret(secret),
                created_at=self.clock(),
                created_by=created_by,
            )
            self.store.create_operator(record)
        log.info("operator %s (%s) created by %s", name, record.role, created_by)
        return record, secret

    def forget(self, operator_ids: Iterable[str]) -> None:
        """Drop operators revoked elsewhere from the cache: their next call reads them again."""
        # Not under self._lock, which an add or revoke holds across database writes: this runs
        # on the event loop. The count moves first, so a lookup racing this is not cached.
        self._revokes += 1
        for operator_id in operator_ids:
            self._cache.pop(operator_id, None)

    def list(self, include_revoked: bool = False) -> builtins.list[OperatorRecord]:
        """Return operators by name."""
        return self.table.list(include_revoked)

    def revoke(self, name_or_id: str, by: OperatorRecord) -> OperatorRecord:
        """Revoke an operator now; its token stops working with the next call.

        Nobody revokes themselves, and the last active admin stays: either would leave the
        server without anyone able to manage operators.
        """
        ident = name_or_id.strip()
        if not ident:
            raise InvalidArgument("name the operator to revoke (its name or id)")
        with self._lock:
            record = self.table.find(ident)
            if record is None:
                raise NotFound(f"no operator is called {ident!r}: see `rmm operators list`")
            if record.id == by.id:
                raise InvalidArgument(
                    f"operator {record.name!r} cannot revoke itself: ask another admin"
                )
            if record.revoked_at is not None:
                return record
            if not self.table.revoke(record.id, self.clock()):
                raise InvalidArgument(
                    f"operator {record.name!r} is the last active admin: add another admin "
                    "(`rmm operators add NAME --role admin`) before revoking it"
                )
            # After the write: a lookup that read the row before it is not cached (the count
            # moved) and the next one reads the revoked row.
            self._revokes += 1
            self._cache.pop(record.id, None)
            revoked = self.store.get_operator(record.id)
        assert revoked is not None  # it was just updated, and operators are never deleted
        if self.revoked is not None:
            self.revoked(revoked.id)
        log.info("operator %s revoked by %s", revoked.name, by.name)
        return revoked
