"""The server's in-memory view of its agents: who they are and what they last reported.

Built from storage at start-up and kept current by enrollment and ingest. It answers the hot
questions (is this credential valid, what goes into /metrics) without touching the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rmm_proto import agent_pb2
from rmm_server.exposition import AgentFragments, ExportBudget, render_agent_fragments
from rmm_server.report_shapes import Shape
from rmm_server.reports import ReportSeries, host_facts
from rmm_server.storage import AgentRecord


@dataclass(slots=True)
class AgentState:
    record: AgentRecord
    fragments: AgentFragments = field(default_factory=dict)


class Fleet:
    """Every known agent's record and cached exposition fragments, safe across threads."""

    def __init__(self, export_budget: ExportBudget | None = None) -> None:
        # What one agent may put on /metrics (None: the exporter's defaults).
        self.export_budget = export_budget
        self._agents: dict[str, AgentState] = {}
        self._lock = threading.Lock()
        # With replicas: reads an agent this replica has not heard of yet (enrolled through
        # another one a moment ago) from the database.
        self.loader: Callable[[str], AgentRecord | None] | None = None
        # Ids the database did not know: agent ids are random and never reused, so a caller
        # trying made-up ids costs one query per id, not one per call (bounded, oldest first).
        self._unknown: dict[str, None] = {}
        # Bumped when what the dashboard's overview must show at once may have changed without
        # time passing: an agent added, removed, revoked, moved, or back online. Going offline
        # is time's doing and is not counted here (the dashboard counts who is online itself).
        # Read with no lock: a reader only compares it with the value it saw before.
        self.version = 0

    def __len__(self) -> int:
        return len(self._agents)

    def add(self, record: AgentRecord, latest: agent_pb2.Report | None = None) -> None:
        """Add or replace an agent, with its latest report when one is known."""
        fragments = (
            render_agent_fragments(record, latest, budget=self.export_budget)
            if latest is not None and record.revoked_at is None
            else {}
        )
        with self._lock:
            self._agents[record.id] = AgentState(record, fragments)
            self.version += 1

    def get(self, agent_id: str) -> AgentRecord | None:
        """Return the agent's record, or None."""
        state = self._agents.get(agent_id)
        return state.record if state else None

    def get_or_load(self, agent_id: str) -> AgentRecord | None:
        """Return the agent's record, read from the database when it is not known here."""
        record = self.get(agent_id)
        if record is None and self.loader is not None and agent_id not in self._unknown:
            record = self.loader(agent_id)
            if record is not None:
                self.refresh([record])
                record = self.get(agent_id)
            else:
                self._unknown[agent_id] = None
                if len(self._unknown) > MAX_UNKNOWN_IDS:
                    del self._unknown[next(iter(self._unknown))]
        return record

    def refresh(self, records: Iterable[AgentRecord]) -> None:
        """Take what another replica changed in agents' records (read back from the database):
        credentials, revocation, identity. Unknown agents are added; reported state stays."""
        for fresh in records:
            with self._lock:
                self.version += 1
                state = self._agents.get(fresh.id)
                if state is None:
                    self._agents[fresh.id] = AgentState(fresh)
                    continue
                record = state.record
                placed = (record.client, record.site, record.tags)
                for name in _SHARED_FIELDS:
                    setattr(record, name, getattr(fresh, name))
                # Moved or retagged through another replica: its series here carry the old
                # labels, so they go until its next report renders them again.
                if record.revoked_at is not None or placed != (
                    record.client,
                    record.site,
                    record.tags,
                ):
                    state.fragments = {}

    def refresh_liveness(
        self, rows: Iterable[tuple[str, float, int, int]], skip: Callable[[str], bool]
    ) -> None:
        """Take (id, last_seen, last_sequence, interval) of agents reporting to other replicas,
        so that online/offline reads the same on every replica; `skip` says which are ours."""
        for agent_id, last_seen, last_sequence, interval in rows:
            state = self._agents.get(agent_id)
            if state is None or skip(agent_id):
                continue
            record = state.record
            if record.last_seen is None or last_seen > record.last_seen:
                if not record.online(last_seen):
                    self.version += 1
                record.last_seen = last_seen
                record.interval_seconds = interval
            record.last_sequence = max(record.last_sequence, last_sequence)

    def revoke(self, agent_id: str, revoked_at: float) -> AgentRecord | None:
        """Mark an agent revoked: its series leave /metrics at once, its record stays so that
        its calls are refused as revoked. Return the record, or None when unknown."""
        with self._lock:
            state = self._agents.get(agent_id)
            if state is None:
                return None
            state.record.revoked_at = revoked_at
            state.fragments = {}
            self.version += 1
            return state.record

    def place(
        self,
        agent_id: str,
        client: str,
        site: str,
        tags: Iterable[str],
        latest: agent_pb2.Report | None,
    ) -> AgentRecord | None:
        """Move an agent to another client or site, or retag it, here and on /metrics at once.

        Its series are rendered again from `latest` (its latest stored report) under the new
        labels; without one they leave /metrics until its next report. The record is changed
        in place, so the alert service sees the new scope at the agent's next report. Return the
        record, or None when unknown.
        """
        with self._lock:
            state = self._agents.get(agent_id)
            if state is None:
                return None
            record = state.record
            record.client, record.site, record.tags = client, site, list(tags)
            self.version += 1
        fragments = (
            render_agent_fragments(record, latest, budget=self.export_budget)
            if latest is not None and record.revoked_at is None
            else {}
        )
        with self._lock:
            state.fragments = fragments
        return record

    def remove(self, agent_id: str) -> None:
        """Forget an agent, so it disappears from /metrics at once."""
        with self._lock:
            self._agents.pop(agent_id, None)
            self.version += 1

    def apply_report(
        self,
        agent_id: str,
        report: agent_pb2.Report,
        received_at: float,
        summary: dict[str, object],
        series: ReportSeries | None = None,
        shape: Shape | None = None,
    ) -> bool:
        """Make `report` the agent's latest if it is newer; return whether it was. `series`:
        its samples as validate_report() returned them; `shape`: their validated shape."""
        state = self._agents.get(agent_id)
        if (
            state is None
            or report.sequence <= state.record.last_sequence
            or state.record.revoked_at is not None
        ):
            return False
        record = state.record
        if not record.online(received_at):
            self.version += 1  # back online (or first seen): the overview's counts change
        record.last_sequence = report.sequence
        if record.first_sequence is None:
            record.first_sequence = report.sequence
        record.last_seen = received_at
        record.interval_seconds = report.interval_seconds or record.interval_seconds
        record.agent_version = report.agent_version
        record.summary = dict(summary)
        for name, value in host_facts(report.host).items():
            if value:
                setattr(record, name, value)
        if report.HasField("inventory"):
            record.inventory_hash = report.inventory.hash
            record.inventory_updated_at = received_at
        fragments = render_agent_fragments(record, report, series, self.export_budget, shape)
        with self._lock:
            state.fragments = fragments
        return True

    def snapshot(self) -> list[AgentState]:
        """Return the current agents, revoked ones left out; each state's fragments are
        replaced, never mutated."""
        with self._lock:
            return [state for state in self._agents.values() if state.record.revoked_at is None]


MAX_UNKNOWN_IDS = 10_000

# What an operator or the agent's credential calls change (on any replica), as opposed to what
# the agent's own reports change (on the replica holding it).
_SHARED_FIELDS = (
    "credential_hash",
    "pending_credential_hash",
    "rotate_requested_at",
    "revoked_at",
    "client",
    "site",
    "tags",
)
