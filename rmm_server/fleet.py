"""The server's in-memory view of its agents: who they are and what they last reported.

Built from storage at start-up and kept current by enrollment and ingest. It answers the hot
questions (is this credential valid, what goes into /metrics) without touching the database.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from rmm_proto import agent_pb2
from rmm_server.exporter import AgentFragments, render_agent_fragments
from rmm_server.reports import host_facts
from rmm_server.storage import AgentRecord


@dataclass(slots=True)
class AgentState:
    record: AgentRecord
    fragments: AgentFragments = field(default_factory=dict)


class Fleet:
    """Every known agent's record and cached exposition fragments, safe across threads."""

    def __init__(self) -> None:
        self._agents: dict[str, AgentState] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._agents)

    def add(self, record: AgentRecord, latest: agent_pb2.Report | None = None) -> None:
        """Add or replace an agent, with its latest report when one is known."""
        fragments = render_agent_fragments(record, latest) if latest is not None else {}
        with self._lock:
            self._agents[record.id] = AgentState(record, fragments)

    def get(self, agent_id: str) -> AgentRecord | None:
        """Return the agent's record, or None."""
        state = self._agents.get(agent_id)
        return state.record if state else None

    def remove(self, agent_id: str) -> None:
        """Forget an agent, so it disappears from /metrics at once."""
        with self._lock:
            self._agents.pop(agent_id, None)

    def apply_report(
        self,
        agent_id: str,
        report: agent_pb2.Report,
        received_at: float,
        summary: dict[str, object],
    ) -> bool:
        """Make `report` the agent's latest if it is newer; return whether it was."""
        state = self._agents.get(agent_id)
        if state is None or report.sequence <= state.record.last_sequence:
            return False
        record = state.record
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
        fragments = render_agent_fragments(record, report)
        with self._lock:
            state.fragments = fragments
        return True

    def snapshot(self) -> list[AgentState]:
        """Return the current agents; each state's fragments are replaced, never mutated."""
        with self._lock:
            return list(self._agents.values())
