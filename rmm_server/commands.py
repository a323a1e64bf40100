"""Remote commands: issue signed commands, deliver them over agents' streams, collect results.

A command is stored before it is sent, so one for an agent that is offline (or whose stream
breaks) waits in the database and goes out when the agent connects, until it expires. Results
are written in batches by one task and acknowledged to the agent only after they are stored; the
agent keeps resending a result until then, and the server keeps the first final result of each
command, so neither a lost result nor a resent one changes the outcome.

A result counts against its agent's byte budget and the disk reserve (rmm_server/budgets.py)
before it is written. One that does not fit is not stored: the command is stored as failed with
the reason (the operator's `rmm run` shows it) and acknowledged like any final result, so the
agent does not resend it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rmm_common.logs import agent_label, agent_text
from rmm_common.tokens import new_ident
from rmm_proto import commands_pb2
from rmm_server.background import BackgroundTasks
from rmm_server.budgets import (
    COMMAND_RESULT,
    AgentByteBudget,
    BudgetExceeded,
    DiskReserveReached,
    FreeSpaceReserve,
)
from rmm_server.cluster import Cluster
from rmm_server.command_fields import signed_command_fields
from rmm_server.server_metrics import ServerMetrics
from rmm_server.signing import CommandSigner
from rmm_server.storage import AgentRecord, Store
from rmm_server.storage.commands import FINAL_STATUSES, CommandRecord, CommandStore

log = logging.getLogger(__name__)
Status = commands_pb2.CommandStatus

# A result batch waits at most this long for company before it is written.
RESULT_BATCH_SECONDS = 0.01
MAX_RESULT_BATCH = 1000
LINK_QUEUE_SIZE = 10_000

AuditEntry = tuple[str, str, str, dict[str, Any], str]  # operator, action, target, details, outcome
AuditFn = Callable[[Sequence[AuditEntry]], object]
WatchFn = Callable[[CommandRecord], None]


def action_name(command: commands_pb2.Command) -> str:
    """Return the command's action field name (run_script, reboot...)."""
    return command.WhichOneof("action") or ""


def status_name(status: int) -> str:
    """Return a status as a short lower-case word: succeeded, timed_out..."""
    return Status.Name(status).removeprefix("COMMAND_").lower()


@dataclass(slots=True)
class AgentLink:
    """One agent's live command stream on this server."""

    agent_id: str
    hostname: str
    connected_at: float
    outbox: asyncio.Queue[commands_pb2.ServerCommandMessage | None] = field(
        default_factory=lambda: asyncio.Queue(LINK_QUEUE_SIZE)
    )

    def send(self, message: commands_pb2.ServerCommandMessage) -> bool:
        """Queue a message for the agent; False when the agent is not draining its stream."""
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    def close(self) -> None:
        """End the stream (a newer one from the same agent replaces it)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(None)


@dataclass(slots=True)
class PendingResult:
    agent_id: str
    result: commands_pb2.CommandResult
    link: AgentLink | None
    stored: Callable[[], object] | None = None  # called once written (or given up on)


class CommandService:
    """Issue, deliver and settle remote commands for the agents connected to this server."""

    def __init__(
        self,
        store: Store,
        signer: CommandSigner,
        audit: AuditFn | None = None,
        metrics: ServerMetrics | None = None,
        clock: Callable[[], float] = time.time,
        byte_budget: AgentByteBudget | None = None,
        free_space: FreeSpaceReserve | None = None,
    ) -> None:
        self.commands = CommandStore(store)
        # Shared with the report ingestor: one budget per agent for all it makes us store.
        self.byte_budget = byte_budget
        self.free_space = free_space
        self.signer = signer
        # Who runs this server (serve --msp-name): every command carries it, signed, for the
        # consent prompt to name.
        self.msp_name = ""
        self.audit = audit
        self.metrics = metrics
        self.clock = clock
        self.links: dict[str, AgentLink] = {}
        self._watchers: dict[str, WatchFn] = {}
        self._results: asyncio.Queue[PendingResult] | None = None
        self._writer: asyncio.Task[None] | None = None
        # The other replicas: who holds which agent, and where to say what changed.
        self.cluster: Cluster = Cluster("local")
        # Called (in a worker thread) with the commands this process settled, once stored:
        # patching records InstallUpdates outcomes there.
        self.settled_hooks: list[Callable[[list[CommandRecord]], object]] = []
        self._background = BackgroundTasks()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the result writer (call from the event loop)."""
        self._results = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_results(), name="command-results")

    async def stop(self) -> None:
        """Store the results already received, then end every stream."""
        if self._results is not None and self._writer is not None:
            await self._results.join()
            self._writer.cancel()
        self.close_links()

    def close_links(self) -> None:
        """End every agent's command stream on this server (it is stopping)."""
        for link in list(self.links.values()):
            link.close()

    # --- agents' streams ------------------------------------------------------------------

    def is_connected(self, agent_id: str) -> bool:
        """Say whether the agent has a command stream open on this server or another replica."""
        return agent_id in self.links or self.cluster.held_elsewhere(agent_id)

    async def connect(self, agent: AgentRecord, hello: commands_pb2.CommandHello) -> AgentLink:
        """Register an agent's new stream and queue what waits for it."""
        now = self.clock()
        link = AgentLink(agent.id, agent.hostname, now)
        previous = self.links.get(agent.id)
        if previous is not None:
            previous.close()
        self.links[agent.id] = link
        self.cluster.attach(agent.id)
        if hello.disconnected_at:
            log.info(
                "agent %s is back after %.0f s without its command stream (%s)",
                agent_label(agent.hostname, agent.id),
                max(0.0, now - hello.disconnected_at),
                agent_text(hello.disconnect_reason or "reason unknown"),
            )
        else:
            log.info(
                "agent %s opened its command stream; agent started %.0f s ago, host up %.0f s",
                agent_label(agent.hostname, agent.id),
                max(0.0, now - hello.agent_started_at) if hello.agent_started_at else 0.0,
                max(0.0, now - hello.boot_time) if hello.boot_time else 0.0,
            )
        waiting = await asyncio.to_thread(self.commands.undelivered, agent.id, now)
        for record in waiting:
            message = commands_pb2.ServerCommandMessage()
            message.command.ParseFromString(record.signed)
            link.send(message)
        if waiting:
            log.info("delivering %d queued commands to agent %s", len(waiting), agent.id)
            await asyncio.to_thread(self.commands.mark_sent, [r.id for r in waiting], now)
        return link

    def disconnect(self, link: AgentLink) -> None:
        """Forget a stream that ended (unless a newer one replaced it already)."""
        self.cluster.detach(link.agent_id)
        if self.links.get(link.agent_id) is link:
            del self.links[link.agent_id]

    def submit_result(
        self,
        agent_id: str,
        result: commands_pb2.CommandResult,
        link: AgentLink | None,
        stored: Callable[[], object] | None = None,
    ) -> None:
        """Take a result from an agent's stream; it is stored, then acknowledged.

        `stored` is called once the result's batch was written or given up on: the stream's
        reader bounds what one agent holds here by it (the queue itself is not bounded, so the
        bound is per stream, not first come first served across agents).
        """
        if self._results is None:
            raise RuntimeError("CommandService.start() was not called")
        self._results.put_nowait(PendingResult(agent_id, result, link, stored))

    # --- issuing --------------------------------------------------------------------------

    async def issue(
        self,
        operator: str,
        targets: Sequence[AgentRecord],
        action: str,
        request: Any,
        timeout_seconds: float,
        expires_in_seconds: float,
        consent: Callable[[AgentRecord], int],
        summary: Callable[[commands_pb2.Command], str],
        run_id: str = "",
        shape: Callable[[AgentRecord, commands_pb2.Command], None] | None = None,
        watch: WatchFn | None = None,
        ticket: int = 0,
        maintenance_window: str = "",
    ) -> list[CommandRecord]:
        """Sign, store and send one command per target; return the stored records.

        `request` is the action's message; `shape` may adjust each agent's copy (e.g. the
        shell for its OS). `watch` is called with each command's final record. `ticket` (0:
        none) or `maintenance_window` ("": none) is what the action is done for: the consent
        prompt names it.
        """
        now = self.clock()
        records: list[CommandRecord] = []
        messages: list[commands_pb2.SignedCommand] = []
        for agent in targets:
            command = commands_pb2.Command(
                id=new_ident(),
                agent_id=agent.id,
                issued_at=now,
                expires_at=now + expires_in_seconds,
                timeout_seconds=timeout_seconds,
                operator=operator,
                consent=consent(agent),  # type: ignore[arg-type]
                run_id=run_id,
                msp=self.msp_name,
                ticket=ticket,
                maintenance_window=maintenance_window,
            )
            getattr(command, action).CopyFrom(request)
            if shape is not None:
                shape(agent, command)
            signed = self.signer.sign(command)
            messages.append(signed)
            records.append(
                CommandRecord(
                    id=command.id,
                    run_id=run_id,
                    agent_id=agent.id,
                    hostname=agent.hostname,
                    operator=operator,
                    action=action,
                    summary=summary(command),
                    status=Status.COMMAND_QUEUED,
                    issued_at=now,
                    expires_at=command.expires_at,
                    signed=signed.SerializeToString(),
                )
            )
        if watch is not None:
            for record in records:
                self._watchers[record.id] = watch
        await asyncio.to_thread(self._store_new, records)
        if self.metrics is not None:
            self.metrics.commands_issued.labels(action=action).inc(len(records))
        sent: list[str] = []
        for record, signed in zip(records, messages, strict=True):
            link = self.links.get(record.agent_id)
            if link is not None and link.send(commands_pb2.ServerCommandMessage(command=signed)):
                sent.append(record.id)
                record.status = Status.COMMAND_SENT
                record.sent_at = now
        if sent:
            await asyncio.to_thread(self.commands.mark_sent, sent, now)
        elsewhere = [
            [record.agent_id, record.id]
            for record in records
            if record.status == Status.COMMAND_QUEUED
            and self.cluster.held_elsewhere(record.agent_id)
        ]
        if elsewhere:
            self.cluster.publish("cmd", "m", elsewhere)
        return records

    # --- other replicas -------------------------------------------------------------------

    def deliver_forwarded(self, message: dict[str, Any]) -> None:
        """Send commands another replica stored for agents whose streams are here."""
        wanted: dict[str, list[str]] = {}
        for agent_id, command_id in message.get("m", ()):
            if agent_id in self.links:
                wanted.setdefault(str(agent_id), []).append(str(command_id))
        if wanted:
            self._background.spawn(self._deliver_forwarded(wanted))

    async def _deliver_forwarded(self, wanted: dict[str, list[str]]) -> None:
        ids = [command_id for ids in wanted.values() for command_id in ids]
        try:
            known = await asyncio.to_thread(self._load, ids)
        except Exception:  # a database outage: the agent gets them when it reconnects
            log.exception("could not read %d commands another replica issued", len(ids))
            return
        now = self.clock()
        sent: list[str] = []
        for command_id in ids:
            record = known.get(command_id)
            link = self.links.get(record.agent_id) if record is not None else None
            if record is None or link is None or record.status != Status.COMMAND_QUEUED:
                continue
            message = commands_pb2.ServerCommandMessage()
            message.command.ParseFromString(record.signed)
            if link.send(message):
                sent.append(command_id)
        if sent:
            await asyncio.to_thread(self.commands.mark_sent, sent, now)

    def settled_elsewhere(self, message: dict[str, Any]) -> None:
        """Finish the watched commands another replica stored a final result for."""
        watched = [str(c) for c in message.get("c", ()) if c in self._watchers]
        if watched:
            self._background.spawn(self._settled_elsewhere(watched))

    async def _settled_elsewhere(self, ids: list[str]) -> None:
        try:
            known = await asyncio.to_thread(self._load, ids)
        except Exception:  # the operator's wait ends with the stored state at its deadline
            log.exception("could not read %d results another replica stored", len(ids))
            return
        for record in known.values():
            if record.final:
                self._finish(record)

    def _store_new(self, records: Sequence[CommandRecord]) -> None:
        # The audit entry is written before the command can reach the agent: nothing runs
        # unrecorded, even if the server dies right after sending.
        if self.audit is not None:
            self.audit(
                [
                    (
                        record.operator,
                        "command.sent",
                        record.agent_id,
                        {
                            "command_id": record.id,
                            "run_id": record.run_id,
                            "hostname": record.hostname,
                            "action": record.action,
                            "summary": record.summary,
                            # What can change what runs: args, env, params, cwd, timeout...
                            **signed_command_fields(record.signed),
                        },
                        "queued",
                    )
                    for record in records
                ]
            )
        self.commands.insert(records)

    def unwatch(self, command_ids: Iterable[str]) -> None:
        """Stop calling a watcher for these commands (its caller went away)."""
        for command_id in command_ids:
            self._watchers.pop(command_id, None)

    # --- results --------------------------------------------------------------------------

    async def _write_results(self) -> None:
        assert self._results is not None
        queue = self._results
        while True:
            batch = [await queue.get()]
            await asyncio.sleep(RESULT_BATCH_SECONDS)
            while not queue.empty() and len(batch) < MAX_RESULT_BATCH:
                batch.append(queue.get_nowait())
            try:
                await self._settle(batch)
            except Exception:  # a database outage must not end the writer: the agents resend
                log.exception("could not store %d command results; agents will resend", len(batch))
            finally:
                for pending in batch:
                    if pending.stored is not None:
                        pending.stored()
                    queue.task_done()

    async def _settle(self, batch: list[PendingResult]) -> None:
        ids = list({pending.result.command_id for pending in batch})
        known = await asyncio.to_thread(self._load, ids)
        now = self.clock()
        updates: list[tuple[str, int, bytes, str, float | None]] = []
        notes: dict[str, str] = {}
        settled: list[CommandRecord] = []
        acks: list[tuple[AgentLink | None, str]] = []
        for pending in batch:
            result = pending.result
            record = known.get(result.command_id)
            if record is None or record.agent_id != pending.agent_id:
                log.warning(
                    "agent %s sent a result for command %r that is not its own; ignored",
                    pending.agent_id,
                    result.command_id,
                )
                acks.append((pending.link, result.command_id))
                continue
            if record.final:
                acks.append((pending.link, result.command_id))  # a resend: stored already
                continue
            final = result.status in FINAL_STATUSES
            refusal = self._charge(record, result)
            if refusal:
                if not final:
                    continue  # progress: not stored (its final result is charged in turn)
                result = refused_result(result, refusal)
            record.status = result.status
            record.result = result.SerializeToString()
            record.error = result.error
            record.finished_at = now if final else None
            record.result_note = result_note(result)
            if record.result_note:
                notes[record.id] = record.result_note
            updates.append(
                (record.id, record.status, record.result, record.error, record.finished_at)
            )
            if final:
                settled.append(record)
                acks.append((pending.link, result.command_id))
        await asyncio.to_thread(self.commands.record_results, updates, notes)
        for link, command_id in acks:
            if link is not None:
                link.send(commands_pb2.ServerCommandMessage(result_stored=command_id))
        await self._settled(settled)

    def _charge(self, record: CommandRecord, result: commands_pb2.CommandResult) -> str:
        """Count what storing `result` takes against the disk reserve and its agent's byte
        budget; return "" when it may be stored, else why it may not (the refusal counted, and
        logged once per agent and budget window)."""
        # The serialized result and the error column beside it.
        size = result.ByteSize() + len(result.error.encode())
        try:
            if self.free_space is not None:
                self.free_space.charge(size, COMMAND_RESULT)  # logs when the reserve is reached
            if self.byte_budget is not None:
                self.byte_budget.charge(record.agent_id, size, COMMAND_RESULT)
        except DiskReserveReached as refusal:
            self._count_refusal("free_space")
            return str(refusal)
        except BudgetExceeded as refusal:
            self._count_refusal("agent_bytes")
            if refusal.first:
                log.warning(
                    "refusing the command results of %s: %s",
                    agent_label(record.hostname, record.agent_id),
                    refusal,
                )
            return str(refusal)
        return ""

    def _count_refusal(self, budget: str) -> None:
        if self.metrics is not None:
            self.metrics.command_results_refused.labels(budget=budget).inc()

    def _load(self, ids: Sequence[str]) -> dict[str, CommandRecord]:
        return self.commands.get_many(ids)

    def _finish(self, record: CommandRecord) -> None:
        watcher = self._watchers.pop(record.id, None)
        if watcher is not None:
            watcher(record)

    def _audit_results(self, records: Iterable[CommandRecord]) -> None:
        assert self.audit is not None
        entries: list[AuditEntry] = []
        for record in records:
            result = decode_result(record)
            details: dict[str, Any] = {
                "command_id": record.id,
                "run_id": record.run_id,
                "hostname": record.hostname,
                "action": record.action,
            }
            if result is not None and result.HasField("script"):
                details["exit_code"] = result.script.exit_code
            outcome = status_name(record.status)
            if record.error:
                outcome = f"{outcome}: {record.error}"
            entries.append((record.operator, "command.result", record.agent_id, details, outcome))
        self.audit(entries)

    async def expire_overdue(self) -> None:
        """Settle commands that waited past their expiry (scheduler job)."""
        expired = await asyncio.to_thread(self.commands.expire, self.clock())
        for record in expired:
            log.info("command %s for agent %s expired undelivered", record.id, record.agent_id)
        await self._settled(expired)

    async def _settled(self, records: list[CommandRecord]) -> None:
        """Tell the waiting operators here and on other replicas, then audit the outcomes."""
        if not records:
            return
        for record in records:
            self._finish(record)
        self.cluster.publish("res", "c", [record.id for record in records])
        if self.audit is not None:
            await asyncio.to_thread(self._audit_results, records)
        for hook in self.settled_hooks:
            try:
                await asyncio.to_thread(hook, records)
            except Exception:  # the result is stored and acknowledged: a hook cannot undo it
                log.exception("a settled-command hook failed for %d commands", len(records))


# How much of the agent's own error a refused result keeps.
MAX_KEPT_ERROR = 500


def refused_result(result: commands_pb2.CommandResult, reason: str) -> commands_pb2.CommandResult:
    """Return what is stored instead of a final result refused for a budget: a failure saying
    why, with the result's times and a script's exit code, none of its output."""
    kept = commands_pb2.CommandResult(
        command_id=result.command_id,
        status=Status.COMMAND_FAILED,
        error=reason,
        started_at=result.started_at,
        finished_at=result.finished_at,
        duplicate=result.duplicate,
    )
    if result.error:
        kept.error += f"; the agent said: {result.error[:MAX_KEPT_ERROR]}"
    if result.HasField("script"):
        script = result.script
        kept.script.exit_code = script.exit_code
        kept.script.timed_out = script.timed_out
        kept.script.stdout_truncated = script.stdout_truncated or bool(script.stdout)
        kept.script.stderr_truncated = script.stderr_truncated or bool(script.stderr)
    return kept


def result_note(result: commands_pb2.CommandResult) -> str:
    """Return what a listing shows of `result` when it does not read it: a file's path, size
    and sha256 (never its data), else nothing."""
    if result.WhichOneof("result") != "file":
        return ""
    file = result.file
    return f"{file.path}: {file.size} bytes, sha256 {file.sha256}"


def decode_result(record: CommandRecord) -> commands_pb2.CommandResult | None:
    """Return the stored result message, or None."""
    if not record.result:
        return None
    result = commands_pb2.CommandResult()
    result.ParseFromString(record.result)
    return result
