"""The ingest pipeline: check a report, store it in a batch, update the fleet, acknowledge.

Reports from every stream meet in one queue; a single writer drains whatever is waiting into one
transaction, so the batch grows by itself under load (SQLite takes one writer at a time anyway).
A report is acknowledged only after its transaction committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from rmm_common.errors import InvalidArgument, StorageError
from rmm_common.logs import agent_label
from rmm_proto import agent_pb2
from rmm_server.budgets import (
    AgentByteBudget,
    AgentCpuBudget,
    BudgetExceeded,
    DiskReserveReached,
    FreeSpaceReserve,
)
from rmm_server.fleet import Fleet
from rmm_server.report_shapes import ReportShapes
from rmm_server.reports import (
    ReportSeries,
    compress,
    decompress,
    host_facts,
    software_changes,
    summarize,
)
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import AgentRecord, Store, StoredReport

log = logging.getLogger(__name__)

# At most one warning a minute per agent about reports refused as conflicting.
CONFLICT_LOG_SECONDS = 60.0
# Reports accepted from streams and not yet written: past this, submit() waits for the writer
# (backpressure to the agents' streams, which stop reading), instead of holding any number of
# reports in memory while the database is slow. Four full batches.
MAX_QUEUED_REPORTS = 2000


class _Conflict(Exception):
    """The store holds another report under this one's (agent, sequence)."""


def _resume_at(agent: AgentRecord, report: agent_pb2.Report) -> int:
    """Return the sequence the agent must not go below, when it sent one under the newest the
    server holds (0: it did not). For a redelivery that is no news to the agent; for an agent
    whose state was lost or restored (below a stored range, or below a pruned one, where there
    is nothing to compare with) it is where to resume."""
    newest = max(agent.last_sequence, report.sequence)
    return newest + 1 if report.sequence < newest else 0


def same_report(held: bytes, report: agent_pb2.Report) -> bool:
    """Say whether the stored compressed body `held` is `report` (a redelivery).

    Bytes first (a redelivery is the same bytes from the agent's spool); else compared in
    canonical form: map order may differ, and a message compared with == is never equal to
    itself when a sample is NaN.
    """
    if not held:
        return False
    stored = decompress(held)
    if stored == report.SerializeToString():
        return True
    try:
        parsed = agent_pb2.Report.FromString(stored)
    except DecodeError:
        return False
    return parsed.SerializeToString(deterministic=True) == report.SerializeToString(
        deterministic=True
    )


@dataclass(slots=True)
class _Pending:
    """A report waiting for the writer: its body and inventory not yet compressed."""

    stored: StoredReport
    agent: AgentRecord
    done: asyncio.Future[None]


# Called once a report is stored: (agent, report, packages added, packages removed).
AfterStore = Callable[
    [AgentRecord, agent_pb2.Report, tuple[str, ...], tuple[str, ...], ReportSeries],
    Awaitable[None],
]
# Returns the agent update to offer in the acknowledgement of a report, if any.
OfferUpdate = Callable[[agent_pb2.Report], agent_pb2.UpdateOffer | None]


class ReportIngestor:
    """Accept reports from agent streams and make them durable in batches."""

    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        metrics: ServerMetrics,
        clock: Callable[[], float] = time.time,
        max_batch: int = 500,
        after_store: AfterStore | None = None,
        offer_update: OfferUpdate | None = None,
        byte_budget: AgentByteBudget | None = None,
        free_space: FreeSpaceReserve | None = None,
        cpu_budget: AgentCpuBudget | None = None,
        max_queued: int = MAX_QUEUED_REPORTS,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.metrics = metrics
        self.clock = clock
        self.max_batch = max_batch
        self.after_store = after_store
        self.offer_update = offer_update
        # Checked before a report is queued: what one agent may store per window, and the disk
        # space never used (None: no check).
        self.byte_budget = byte_budget
        self.free_space = free_space
        # What each agent's reports may cost the event loop; its stream waits when spent.
        self.cpu_budget = cpu_budget if cpu_budget is not None else AgentCpuBudget()
        # Each agent's series set, validated once per change.
        self.shapes = ReportShapes()
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue(max(max_queued, 1))
        # The highest dropped_reports announced per agent: a backlog of reports carrying the
        # same count is announced once.
        self._dropped_told: dict[str, int] = {}
        # Reports refused as conflicting per agent (seeded from its stored summary), and when
        # that was last logged.
        self._conflicts: dict[str, int] = {}
        self._conflict_said: dict[str, float] = {}
        self._writer: asyncio.Task[None] | None = None
        # A write failed and none has worked since: during an outage, one line, not one a batch.
        self._failing = False

    def start(self) -> None:
        """Start the batch writer on the running event loop."""
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="ingest")

    async def stop(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._writer is None:
            return
        if not self._writer.done():  # a full queue waits for a writer that is still there
            await self._queue.put(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None

    async def submit(self, agent: AgentRecord, report: agent_pb2.Report) -> agent_pb2.ReportAck:
        """Store `report` from `agent` and return its acknowledgement once it is durable."""
        started = time.perf_counter()
        self.metrics.reports_received.inc()
        cpu_started = time.thread_time()
        raw = report.SerializeToString()
        hits = self.shapes.hits
        try:
            series = self.shapes.validate(agent.id, report, raw)
        except InvalidArgument as error:
            # Refused for good: the agent drops it instead of resending it forever.
            self.cpu_budget.charge(agent.id, time.thread_time() - cpu_started)
            self.metrics.reports_rejected.labels(reason="invalid").inc()
            log.warning("agent %s sent an invalid report: %s", agent.id, error)
            return agent_pb2.ReportAck(sequence=report.sequence, rejected=str(error))
        finally:
            hit = self.shapes.hits > hits
            self.metrics.report_shapes.labels(result="hit" if hit else "miss").inc()
        shape = self.shapes.shape_of(agent.id)  # this report's, before another is checked
        if report.sequence <= agent.last_sequence:
            # Usually a redelivery after a lost acknowledgement; but a reused sequence (agent
            # state restored, lost or cloned) looks the same by number, so the content decides.
            # Read only on this path, which is rare: the hot path costs nothing more.
            held = await asyncio.to_thread(self.store.report_body, agent.id, report.sequence)
            if held is not None:
                return self._duplicate_or_conflict(agent, report, held)
            # Below the newest yet never stored (an earlier copy failed to store while later
            # ones did, or it was pruned): store it like any other.
        received_at = self.clock()
        summary = summarize(report, series)
        conflicts = self._conflicts.get(agent.id, int(agent.summary.get("conflicting_reports", 0)))
        if conflicts:  # kept in the stored summary, so it outlives a server restart
            summary["conflicting_reports"] = conflicts
        # Body and inventory as received: the writer thread compresses them (zlib lets go of
        # the GIL, so on another core than this event loop's) and charges the agent's byte
        # budget with what is stored, before the write.
        stored = StoredReport(
            agent_id=agent.id,
            sequence=report.sequence,
            collected_at=report.collected_at,
            received_at=received_at,
            body=raw,
            host=host_facts(report.host),
            agent_version=report.agent_version,
            interval_seconds=report.interval_seconds or agent.interval_seconds,
            summary=summary,
            inventory_hash=report.inventory.hash if report.HasField("inventory") else "",
            inventory=report.inventory.json if report.HasField("inventory") else None,
        )
        self.cpu_budget.charge(agent.id, time.thread_time() - cpu_started)
        added: tuple[str, ...] = ()
        removed: tuple[str, ...] = ()
        if report.HasField("inventory") and agent.inventory_hash not in ("", report.inventory.hash):
            old = await asyncio.to_thread(self.store.get_inventory, agent.id)
            # Two inventory documents decoded and compared (tens of ms at the size limits):
            # in a worker thread, and counted against the agent's CPU budget.
            diff_started = time.perf_counter()
            added, removed = await asyncio.to_thread(
                software_changes, decompress(old) if old else None, report.inventory.json
            )
            self.cpu_budget.charge(agent.id, time.perf_counter() - diff_started)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(stored, agent, done))
        try:
            await done  # BudgetExceeded, DiskReserveReached: refused, never written
        except _Conflict:  # another copy was stored first (same batch, or a race): compare
            held = await asyncio.to_thread(self.store.report_body, agent.id, report.sequence)
            return self._duplicate_or_conflict(agent, report, held or b"")
        self._tell_dropped(agent, report)
        self.fleet.apply_report(agent.id, report, received_at, summary, series, shape)
        current = self.fleet.get(agent.id)
        need_inventory = bool(
            report.inventory_hash
            and current is not None
            and current.inventory_hash != report.inventory_hash
        )
        if self.after_store is not None and current is not None:
            try:
                await self.after_store(current, report, added, removed, series)
            except Exception:  # alerting trouble must never cost an agent its acknowledgement
                log.exception("evaluating the report of agent %s failed", agent.id)
        self.metrics.report_processing.observe(time.perf_counter() - started)
        ack = agent_pb2.ReportAck(
            sequence=report.sequence,
            need_inventory=need_inventory,
            next_sequence=_resume_at(agent, report),
        )
        offer = self.offer_update(report) if self.offer_update is not None else None
        if offer is not None:
            ack.update.CopyFrom(offer)
        return ack

    def _charge(self, agent: AgentRecord, size: int) -> None:
        """Count `size` stored bytes against the disk reserve and `agent`'s budget, or raise
        (the agent's stream ends with that status; its report stays in its spool). Called in
        the writer thread (the budgets take a lock)."""
        if self.free_space is not None:
            try:
                self.free_space.charge(size)
            except DiskReserveReached:
                self.metrics.reports_refused.labels(budget="free_space").inc()
                raise  # logged by FreeSpaceReserve once when the reserve is reached
        if self.byte_budget is not None:
            try:
                self.byte_budget.charge(agent.id, size)
            except BudgetExceeded as error:
                self.metrics.reports_refused.labels(budget="agent_bytes").inc()
                if error.first:
                    log.warning(
                        "refusing the reports of %s: %s",
                        agent_label(agent.hostname, agent.id),
                        error,
                    )
                raise

    def _duplicate_or_conflict(
        self, agent: AgentRecord, report: agent_pb2.Report, held: bytes
    ) -> agent_pb2.ReportAck:
        """Acknowledge a redelivery of the report stored as `held`; refuse other content."""
        if not same_report(held, report):
            return self._conflict(agent, report)
        self.metrics.reports_duplicate.inc()
        return agent_pb2.ReportAck(
            sequence=report.sequence, next_sequence=_resume_at(agent, report)
        )

    def _conflict(self, agent: AgentRecord, report: agent_pb2.Report) -> agent_pb2.ReportAck:
        """Refuse a report whose sequence the server holds with other content: count it, say
        it, and tell the agent (acknowledged as refused, so it is not resent forever)."""
        self.metrics.reports_conflicting.inc()
        count = self._conflicts.get(agent.id, int(agent.summary.get("conflicting_reports", 0)))
        count += 1
        self._conflicts[agent.id] = count
        agent.summary["conflicting_reports"] = count
        now = time.monotonic()
        if now - self._conflict_said.get(agent.id, -CONFLICT_LOG_SECONDS) >= CONFLICT_LOG_SECONDS:
            self._conflict_said[agent.id] = now  # an agent that lost its state sends many
            log.warning(
                "agent %s sent report %d, but the server holds a different report under "
                "that sequence: refused, not stored (%d such from this agent). It reused sequence "
                "numbers: its state directory was restored from a copy, lost, or copied to another "
                "host; a cloned host must enroll again (`rmm-agent enroll --force`)",
                agent_label(agent.hostname, agent.id),
                report.sequence,
                count,
            )
        return agent_pb2.ReportAck(
            sequence=report.sequence,
            rejected=(
                f"sequence {report.sequence} is already stored with other content, so this "
                "report is refused: this agent reused sequence numbers (its state directory was "
                "restored, lost or copied to another host)"
            ),
            # The agent resumes above what is stored, so one refusal, not one per number the
            # server holds (an agent whose state was lost would otherwise start again at 1).
            next_sequence=max(agent.last_sequence, report.sequence) + 1,
        )

    def _tell_dropped(self, agent: AgentRecord, report: agent_pb2.Report) -> None:
        told = self._dropped_told.get(agent.id, int(agent.summary.get("dropped_reports", 0)))
        if report.dropped_reports > told:
            self._dropped_told[agent.id] = report.dropped_reports
            log.warning(
                "agent %s dropped %d reports it could not deliver, %d in all: its spool "
                "reached its bound while the server was out of reach (the gap in its sequence "
                "numbers is lost data; raise spool_max_reports/spool_max_bytes on the agent "
                "if outages this long are expected)",
                agent_label(agent.hostname, agent.id),
                report.dropped_reports - told,
                report.dropped_reports,
            )

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch: list[_Pending] = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            await self._write(batch)

    def _compress_and_write(
        self, batch: list[_Pending]
    ) -> tuple[list[StoredReport], dict[int, Exception]]:
        """In the writer thread: compress each report, charge its stored size, write those
        that fit in one transaction. Return the conflicting reports (write_reports') and the
        refusal of each report over a budget, by id of its _Pending."""
        over: dict[int, Exception] = {}
        writable: list[StoredReport] = []
        for pending in batch:
            stored = pending.stored
            stored.body = compress(stored.body)
            if stored.inventory is not None:
                stored.inventory = compress(stored.inventory)
            try:
                self._charge(pending.agent, len(stored.body) + len(stored.inventory or b""))
            except (BudgetExceeded, DiskReserveReached) as error:
                over[id(pending)] = error
                continue
            writable.append(stored)
        return (self.store.write_reports(writable) if writable else []), over

    async def _write(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            refused, over = await asyncio.to_thread(self._compress_and_write, batch)
        except StorageError as exc:
            self.metrics.storage_errors.inc()
            log.log(
                logging.DEBUG if self._failing else logging.ERROR,
                "storing %d reports failed: %s (agents keep them in their spools and resend "
                "them; further failures are counted in rmm_server_storage_errors_total until a "
                "write works)",
                len(batch),
                " ".join(str(exc).split()),
            )
            self._failing = True
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            return
        self.metrics.storage_batch.observe(time.perf_counter() - started)
        if self._failing:
            self._failing = False
            log.info("storing reports again")
        conflicting = {id(stored) for stored in refused}
        for pending in batch:
            done = pending.done
            if done.done():
                continue
            if id(pending) in over:
                done.set_exception(over[id(pending)])
            elif id(pending.stored) in conflicting:
                done.set_exception(_Conflict())
            else:
                done.set_result(None)
