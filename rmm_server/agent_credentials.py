"""Agent credentials after enrollment: revocation that cuts an agent off at once, and rotation
that never locks an agent out.

Every authenticated agent call in progress on this server is registered (LiveCalls) with the
credential it authenticated with, so a revocation can end them all at once: the call's task is
cancelled while it waits in the handler and turned into UNAUTHENTICATED with the reason. A call
busy sending a message is not cancelled mid-send (gRPC would leave it without a status); it ends
as soon as that send completes.

Rotation keeps two credentials valid: the current one and the one the agent was last given
(`pending_credential_hash`), until the first call made with the new one. So an agent that
crashes between the server's answer and saving the new credential still gets in with the old
one, and asks again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import grpc.aio

from rmm_common.errors import InvalidArgument, NotFound, StorageError, Unauthenticated
from rmm_common.logs import agent_label
from rmm_common.tokens import SecretKind, hash_secret, make_secret
from rmm_server.background import BackgroundTasks
from rmm_server.cluster import Cluster
from rmm_server.fleet import Fleet
from rmm_server.storage import AgentRecord, Store

log = logging.getLogger(__name__)
T = TypeVar("T")


def utc_text(when: float) -> str:
    """Return a unix time as ISO 8601 UTC to the second, for messages."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(eq=False, slots=True)
class LiveCall:
    """One agent call in progress; `cut` ends it with a status."""

    agent_id: str
    credential_hash: str
    method: str
    registry: LiveCalls
    task: asyncio.Task[Any] | None = None
    # True while the handler runs (awaiting anything but gRPC's own send): cancelling is safe.
    in_handler: bool = False
    cut_status: tuple[grpc.StatusCode, str] | None = None

    def cut(self, code: grpc.StatusCode, details: str) -> None:
        """End the call with `code` and `details` (call on the event loop)."""
        if self.cut_status is not None:
            return
        self.cut_status = (code, details)
        if self.in_handler and self.task is not None:
            self.task.cancel()

    async def _abort_if_cut(self, context: grpc.aio.ServicerContext) -> None:
        if self.cut_status is not None:
            await context.abort(*self.cut_status)

    async def unary(self, response: Awaitable[T], context: grpc.aio.ServicerContext) -> T:
        """Await a unary handler's response; a cut ends it with the cut's status."""
        try:
            self.in_handler = True
            try:
                return await response
            except asyncio.CancelledError:
                await self._abort_if_cut(context)
                raise
            finally:
                self.in_handler = False
        finally:
            self.registry.close(self)

    async def stream(
        self, responses: AsyncIterator[T], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[T]:
        """Relay a streaming handler's responses; a cut ends the stream with its status."""
        iterator = responses.__aiter__()
        try:
            while True:
                await self._abort_if_cut(context)  # cut while gRPC was sending the last one
                self.in_handler = True
                try:
                    response = await iterator.__anext__()
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    await self._abort_if_cut(context)
                    raise
                finally:
                    self.in_handler = False
                yield response
        finally:
            self.registry.close(self)


@dataclass(slots=True)
class LiveCalls:
    """Agent calls in progress on this server, by agent (used on the event loop only)."""

    _by_agent: dict[str, set[LiveCall]] = field(default_factory=dict)

    def open(self, agent_id: str, credential_hash: str, method: str) -> LiveCall:
        """Register the call running in the current task."""
        call = LiveCall(agent_id, credential_hash, method, self, asyncio.current_task())
        self._by_agent.setdefault(agent_id, set()).add(call)
        return call

    def close(self, call: LiveCall) -> None:
        """Forget a call that ended."""
        calls = self._by_agent.get(call.agent_id)
        if calls is not None:
            calls.discard(call)
            if not calls:
                del self._by_agent[call.agent_id]

    def count(self, agent_id: str) -> int:
        """Return how many calls of the agent are in progress."""
        return len(self._by_agent.get(agent_id, ()))

    def cut(
        self,
        agent_id: str,
        code: grpc.StatusCode,
        details: str,
        credential_hash: str | None = None,
    ) -> int:
        """End the agent's calls (only those made with `credential_hash`, if given)."""
        cut = 0
        for call in list(self._by_agent.get(agent_id, ())):
            if credential_hash is None or call.credential_hash == credential_hash:
                call.cut(code, details)
                cut += 1
        return cut


class AgentCredentials:
    """Revoke agents, ask them to rotate, hand out and settle new credentials."""

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        calls: LiveCalls | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.calls = calls if calls is not None else LiveCalls()
        self.clock = clock
        self._writes = BackgroundTasks()
        # The other replicas, told of revocations and credential changes.
        self.cluster: Cluster = Cluster("local")

    async def revoke(self, agent: AgentRecord, operator: str) -> AgentRecord:
        """Revoke `agent` for good and end every call it has open on this server."""
        revoked_at = await asyncio.to_thread(self.store.revoke_agent, agent.id, self.clock())
        if revoked_at is None:
            raise NotFound(f"agent {agent.id} does not exist any more: see `rmm agents list`")
        record = self.fleet.revoke(agent.id, revoked_at) or agent
        record.revoked_at = revoked_at
        self.cluster.publish("rev", "v", [[agent.id, revoked_at, operator]])
        cut = self._cut_revoked(agent.id, revoked_at, operator)
        log.warning(
            "agent %s revoked by %s; %d open calls cut",
            agent_label(agent.hostname, agent.id),
            operator,
            cut,
            extra={"agent_id": agent.id, "operator": operator, "calls_cut": cut},
        )
        return record

    def _cut_revoked(self, agent_id: str, revoked_at: float, operator: str) -> int:
        return self.calls.cut(
            agent_id,
            grpc.StatusCode.UNAUTHENTICATED,
            f"agent {agent_id} was revoked by {operator} at {utc_text(revoked_at)}",
        )

    def revoked_elsewhere(self, message: dict[str, Any]) -> None:
        """Apply revocations made through another replica: refuse and cut the agents here too."""
        for agent_id, revoked_at, operator in message.get("v", ()):
            self.fleet.revoke(str(agent_id), float(revoked_at))
            cut = self._cut_revoked(str(agent_id), float(revoked_at), str(operator))
            if cut:
                log.warning(
                    "agent %s revoked by %s on another replica; %d open calls cut here",
                    agent_id,
                    operator,
                    cut,
                    extra={"agent_id": agent_id, "operator": operator, "calls_cut": cut},
                )

    async def request_rotation(self, agent: AgentRecord) -> AgentRecord:
        """Ask `agent` to replace its credential: its next report's acknowledgement says so."""
        if agent.revoked_at is not None:
            raise InvalidArgument(
                f"agent {agent.id} is revoked: it gets no new credential (enroll it again)"
            )
        now = self.clock()
        if not await asyncio.to_thread(self.store.request_rotation, agent.id, now):
            raise InvalidArgument(f"agent {agent.id} is revoked or gone: see `rmm agents list`")
        record = self.fleet.get(agent.id) or agent
        record.rotate_requested_at = now
        self.cluster.agent_changed([agent.id])
        return record

    def rotation_requested(self, agent_id: str) -> bool:
        """Say whether an operator asked the agent to rotate and it has not done so yet."""
        record = self.fleet.get(agent_id)
        return record is not None and record.rotate_requested_at is not None

    async def issue(self, agent: AgentRecord) -> str:
        """Make a new credential for `agent`, valid beside its current one; return it."""
        credential = make_secret(SecretKind.AGENT, agent.id)
        digest = hash_secret(credential)
        # Durable before the agent sees it: a server restart must not lose the agent's next key.
        if not await asyncio.to_thread(self.store.set_pending_credential, agent.id, digest):
            raise Unauthenticated(f"agent {agent.id} is revoked: it gets no new credential")
        record = self.fleet.get(agent.id) or agent
        record.pending_credential_hash = digest
        self.cluster.agent_changed([agent.id])
        log.info(
            "agent %s was given a new credential; the old one works until the new one is "
            "first used",
            agent_label(agent.hostname, agent.id),
        )
        return credential

    def promote(self, record: AgentRecord) -> None:
        """The agent used its new credential: make it the only one and end the calls made with
        the old one (call on the event loop; the database is written in the background)."""
        new = record.pending_credential_hash
        if new is None:
            return
        old = record.credential_hash
        record.credential_hash = new
        record.pending_credential_hash = None
        record.rotate_requested_at = None
        cut = self.calls.cut(
            record.id,
            grpc.StatusCode.UNAVAILABLE,
            "this agent's credential was replaced: reconnect with the new one",
            credential_hash=old,
        )
        log.info(
            "agent %s now uses its new credential; the old one is refused from now on "
            "(%d calls made with it ended)",
            agent_label(record.hostname, record.id),
            cut,
        )
        self._writes.spawn(self._store_promotion(record.id, new))

    async def _store_promotion(self, agent_id: str, credential_hash: str) -> None:
        try:
            await asyncio.to_thread(self.store.promote_credential, agent_id, credential_hash)
            self.cluster.agent_changed([agent_id])
        except StorageError as exc:
            # Harmless: the database keeps both hashes valid, and the agent's next call with the
            # new credential promotes it again after a restart.
            log.error("cannot store that agent %s uses its new credential: %s", agent_id, exc)

    async def flush(self) -> None:
        """Wait for the promotions being written (server shutdown)."""
        await self._writes.wait()
