"""Operator identities: the first admin, and checking an operator's bearer token."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from rmm_common.errors import Unauthenticated
from rmm_common.tokens import SecretKind, hash_secret, make_secret, new_ident, parse_secret
from rmm_common.tokens import secret_matches as _matches
from rmm_server.roles import Role
from rmm_server.storage import OperatorRecord, Store

log = logging.getLogger(__name__)
ADMIN_TOKEN_FILE = "admin.token"


class Operators:
    """Look up operators by token; keep a small cache so each call costs no query."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._cache: dict[str, OperatorRecord] = {}

    def bootstrap_admin(self, data_dir: Path) -> Path | None:
        """On a server without operators, create `admin` and write its token (mode 0600)."""
        if self.store.count_operators() > 0:
            return None
        operator_id = new_ident()
        secret = make_secret(SecretKind.OPERATOR, operator_id)
        path = data_dir / ADMIN_TOKEN_FILE
        # Written before the operator exists: a crash in between leaves a useless file that the
        # next start overwrites, never an admin nobody can log in as.
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        self.store.create_operator(
            OperatorRecord(
                id=operator_id,
                name="admin",
                role=Role.ADMIN.name.lower(),
                token_hash=hash_secret(secret),
                created_at=self.clock(),
            )
        )
        log.info("created operator admin; its token is in %s", path)
        return path

    def authenticate(self, secret: str) -> OperatorRecord:
        """Return the operator whose token `secret` is, or raise Unauthenticated."""
        parsed = parse_secret(secret, SecretKind.OPERATOR)
        cached = self._cache.get(parsed.ident)
        record = cached or self.store.get_operator(parsed.ident)
        if record is None or not _matches(parsed.secret, record.token_hash):
            raise Unauthenticated("operator token not recognised: check RMM_TOKEN or --token")
        if record.revoked_at is not None:
            raise Unauthenticated(f"operator {record.name!r} has been revoked")
        self._cache[parsed.ident] = record
        return record
