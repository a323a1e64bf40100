"""Enrollment tokens and the enrollment of new agents."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rmm_common.errors import InvalidArgument, NotFound, Unauthenticated
from rmm_common.text import invisible_problem
from rmm_common.tokens import (
    SecretKind,
    hash_secret,
    make_secret,
    new_ident,
    parse_secret,
    secret_matches,
)
from rmm_server.fleet import Fleet
from rmm_server.storage import AgentRecord, EnrollmentTokenRecord, Store
from rmm_server.storage.desk import DeskStore
from rmm_server.tls import ClientCerts, parse_csr

NAME_RE = re.compile(r"^[\w][\w .,&()'/+-]{0,199}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}$")
MAX_TAGS = 32
DEFAULT_INTERVAL_SECONDS = 30


@dataclass(frozen=True, slots=True)
class EnrolledAgent:
    record: AgentRecord
    credential: str
    client_certificate_pem: str = ""  # with mutual TLS: the agent's certificate, CN = its id


def check_name(kind: str, value: str) -> str:
    """Return a client or site name, or raise InvalidArgument saying what is wrong with it."""
    value = value.strip()
    if not NAME_RE.match(value):
        raise InvalidArgument(
            f"{kind} name {value!r} is invalid: 1-200 characters, starting with a letter or digit"
        )
    return value


def check_tags(tags: Sequence[str]) -> list[str]:
    """Return tags deduplicated and sorted, or raise InvalidArgument naming a bad one."""
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(f"{len(tags)} tags given; at most {MAX_TAGS} are allowed")
    for tag in tags:
        if not TAG_RE.match(tag):
            raise InvalidArgument(f"tag {tag!r} is invalid: 1-64 of letters, digits and _ . : = -")
    return sorted(set(tags))


def check_host_text(host: dict[str, str], agent_version: str) -> None:
    """Raise InvalidArgument naming a host fact or the agent version that holds a control,
    format or line-separator character (rmm_common.text): a hostname with a bidi override or a
    zero-width space reads as another, and PostgreSQL refuses NUL."""
    for name, value in [*sorted(host.items()), ("agent_version", agent_version)]:
        where = name if name == "agent_version" else f"host.{name}"
        problem = invisible_problem(f"enrollment: {where}", value)
        if problem is not None:
            raise InvalidArgument(problem)


class Enrollment:
    """Create, list and revoke enrollment tokens; enroll agents with them."""

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        clock: Callable[[], float] = time.time,
        ca_fingerprint: str = "",
        client_certs: ClientCerts | None = None,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.clock = clock
        # "sha256:<hex>" of the CA new agents pin; empty when plaintext or a public CA.
        self.ca_fingerprint = ca_fingerprint
        # Set when the server requires client certificates: each agent gets one at enrollment.
        self.client_certs = client_certs

    def create_token(
        self,
        client: str,
        site: str,
        created_by: str,
        expires_in: float | None = None,
        max_uses: int | None = None,
    ) -> tuple[EnrollmentTokenRecord, str]:
        """Make a token for one client and site; return it and its secret (shown once)."""
        if expires_in is not None and expires_in <= 0:
            raise InvalidArgument("--expires must be a positive duration")
        if max_uses is not None and max_uses <= 0:
            raise InvalidArgument("--uses must be a positive number")
        now = self.clock()
        token_id = new_ident()
        secret = make_secret(SecretKind.ENROLLMENT, token_id)
        record = EnrollmentTokenRecord(
            id=token_id,
            secret_hash=hash_secret(secret),
            client=check_name("client", client),
            site=check_name("site", site),
            created_at=now,
            created_by=created_by,
            expires_at=now + expires_in if expires_in else None,
            max_uses=max_uses or None,
        )
        # A token is how a new client's or site's first host joins: the desk's records for the
        # names it carries are created with it (docs/desk.md), as the migration made them for
        # the names agents carried before the records existed.
        DeskStore(self.store).ensure_place(record.client, record.site, created_by, now, new_ident)
        self.store.create_token(record)
        return record, secret

    def list_tokens(self, include_inactive: bool) -> list[EnrollmentTokenRecord]:
        """Return tokens, newest first; only active ones unless asked."""
        now = self.clock()
        tokens = self.store.list_tokens()
        if include_inactive:
            return tokens
        return [token for token in tokens if token.state(now) == "active"]

    def revoke_token(self, token_id: str) -> EnrollmentTokenRecord:
        """Revoke a token so that it enrolls nobody any more."""
        record = self.store.revoke_token(token_id, self.clock())
        if record is None:
            raise NotFound(f"enrollment token {token_id!r} does not exist: see `rmm tokens list`")
        return record

    def enroll(
        self,
        token_secret: str,
        host: dict[str, str],
        tags: Sequence[str],
        agent_version: str,
        csr_pem: str = "",
    ) -> EnrolledAgent:
        """Use a token to create an agent with its own credential (and client certificate)."""
        if self.client_certs is not None:
            if not csr_pem:
                raise InvalidArgument(
                    "this server requires client certificates and the agent sent no certificate "
                    "request: upgrade the agent, and enroll it over TLS (not --insecure)"
                )
            parse_csr(csr_pem)  # refused before the token is spent
        check_host_text(host, agent_version)
        parsed = parse_secret(token_secret, SecretKind.ENROLLMENT)
        token = self.store.get_token(parsed.ident)
        if token is None or not secret_matches(parsed.secret, token.secret_hash):
            raise Unauthenticated(
                "enrollment token not recognised: check it was copied whole, or create one with "
                "`rmm tokens create`"
            )
        now = self.clock()
        agent_id = uuid.uuid4().hex
        credential = make_secret(SecretKind.AGENT, agent_id)
        record = AgentRecord(
            id=agent_id,
            credential_hash=hash_secret(credential),
            client=token.client,
            site=token.site,
            enrolled_at=now,
            tags=check_tags(tags),
            enrollment_token_id=token.id,
            interval_seconds=DEFAULT_INTERVAL_SECONDS,
            agent_version=agent_version[:64],
            hostname=host.get("hostname", "")[:200],
            os=host.get("os", "")[:32],
            os_name=host.get("os_name", "")[:200],
            os_version=host.get("os_version", "")[:100],
            kernel=host.get("kernel", "")[:200],
            arch=host.get("arch", "")[:32],
        )
        if not self.store.enroll_agent(token.id, now, record):
            raise Unauthenticated(_why_inactive(self.store.get_token(token.id) or token, now))
        self.fleet.add(record)
        certificate = self.client_certs.issue(csr_pem, agent_id) if self.client_certs else ""
        return EnrolledAgent(record, credential, certificate)


def _why_inactive(token: EnrollmentTokenRecord, now: float) -> str:
    state = token.state(now)
    if state == "revoked":
        return f"enrollment token {token.id} was revoked: ask for a new one"
    if state == "expired":
        return f"enrollment token {token.id} has expired: ask for a new one"
    if state == "used-up":
        return (
            f"enrollment token {token.id} is used up ({token.uses} of {token.max_uses} uses): "
            "ask for a new one"
        )
    return f"enrollment token {token.id} could not be used: try again"
