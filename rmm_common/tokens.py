"""Bearer secrets: their shape, how they are made and how they are checked.

A secret is `<kind>_<id>_<random>`. The server stores only the SHA-256 of the whole string:
the random part carries 192 bits, so a fast hash is enough (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from rmm_common.errors import Unauthenticated

AUTH_METADATA_KEY = "authorization"
BEARER_PREFIX = "Bearer "


class SecretKind(StrEnum):
    ENROLLMENT = "rmme"
    AGENT = "rmma"
    OPERATOR = "rmmo"


@dataclass(frozen=True, slots=True)
class ParsedSecret:
    kind: SecretKind
    ident: str
    secret: str


def new_ident(nbytes: int = 6) -> str:
    """Return a random public identifier (hex)."""
    return secrets.token_hex(nbytes)


def make_secret(kind: SecretKind, ident: str) -> str:
    """Return a new bearer secret of `kind` for `ident`."""
    return f"{kind.value}_{ident}_{secrets.token_urlsafe(24)}"


def hash_secret(secret: str) -> str:
    """Return the hex SHA-256 the server stores instead of `secret`."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Compare `secret` with a stored hash in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse_secret(secret: str, expected: SecretKind) -> ParsedSecret:
    """Split a bearer secret; raise Unauthenticated when it is not of the expected kind."""
    parts = secret.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != expected.value or not parts[1] or not parts[2]:
        raise Unauthenticated(
            f"not a valid {expected.name.lower()} secret: expected the form "
            f"{expected.value}_<id>_<secret>"
        )
    return ParsedSecret(expected, parts[1], secret.strip())


def bearer_metadata(secret: str) -> tuple[tuple[str, str], ...]:
    """Return gRPC call metadata carrying `secret`."""
    return ((AUTH_METADATA_KEY, BEARER_PREFIX + secret),)
