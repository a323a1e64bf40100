"""One agent as `rmm agents list --output json` prints it: the CLI builds the row from an
AgentSummary message, and the server renders the same text for a whole page (ListAgents with
json_rows), so the two cannot drift apart.

Two of a row's values depend on when it is printed, not on the agent's record: its status
(online turns offline as time passes) and last_seen_seconds_ago (counted from the caller's
clock). RowText keeps the rest of the row's text and puts those two in at each listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rmm_common.json_text import INDENT, finite_or_none, float_text, json_text

if TYPE_CHECKING:
    from rmm_proto import operator_pb2


def agent_status(agent: operator_pb2.AgentSummary) -> str:
    """Return revoked, online or offline."""
    if agent.revoked_at:
        return "revoked"
    return "online" if agent.online else "offline"


def agent_row(agent: operator_pb2.AgentSummary, now: float) -> dict[str, Any]:
    """Return an agent summary as JSON-ready data."""
    return {
        "id": agent.id,
        "hostname": agent.hostname,
        "client": agent.client,
        "site": agent.site,
        "tags": list(agent.tags),
        "os": agent.os,
        "os_name": agent.os_name,
        "os_version": agent.os_version,
        "agent_version": agent.agent_version,
        "status": agent_status(agent),
        "revoked_at": agent.revoked_at or None,
        "enrolled_at": agent.enrolled_at,
        "last_seen": agent.last_seen or None,
        "last_seen_seconds_ago": (now - agent.last_seen) if agent.last_seen else None,
        "interval_seconds": agent.interval_seconds,
        "last_sequence": agent.last_sequence,
        "cpu_usage_ratio": finite_or_none(agent.cpu_usage_ratio),
        "memory_used_ratio": finite_or_none(agent.memory_used_ratio),
        "disk_used_ratio_max": finite_or_none(agent.disk_used_ratio_max),
        "disk_used_ratio_max_mountpoint": agent.disk_used_ratio_max_mountpoint or None,
        "uptime_seconds": finite_or_none(agent.uptime_seconds),
        "collector_errors": agent.collector_errors,
    }


# Where the two time-dependent values sit in a row's text: each key begins a line of the row's
# own object (one level in), and a value's text never holds a newline (strings escape theirs),
# so each marker occurs once and its value runs to the next ",\n".
_SECONDS_AGO = f'\n{INDENT * 2}"last_seen_seconds_ago": '
_STATUS = f'\n{INDENT * 2}"status": '
_STATUS_TEXT = {status: json_text(status) for status in ("revoked", "online", "offline")}


@dataclass(frozen=True, slots=True)
class RowText:
    """An agent's row as one item of the printed list, but for its two time-dependent values."""

    head: str  # up to last_seen_seconds_ago's value
    middle: str  # from there to status's value
    tail: str  # from there to the row's end
    last_seen: float  # 0.0: never reported
    revoked: bool

    @classmethod
    def of(cls, agent: operator_pb2.AgentSummary) -> RowText:
        """Render `agent`'s row (agent_row) and cut out the two values."""
        text = INDENT + json_text(agent_row(agent, 0.0), 1)
        head_end = text.index(_SECONDS_AGO) + len(_SECONDS_AGO)
        middle_start = text.index(",\n", head_end)
        middle_end = text.index(_STATUS, middle_start) + len(_STATUS)
        tail_start = text.index(",\n", middle_end)
        return cls(
            head=text[:head_end],
            middle=text[middle_start:middle_end],
            tail=text[tail_start:],
            last_seen=agent.last_seen,
            revoked=bool(agent.revoked_at),
        )

    def text(self, online: bool, now: float) -> str:
        """Return the row as agent_row(agent, now) prints it, the agent online or not."""
        seconds_ago = float_text(now - self.last_seen) if self.last_seen else "null"
        status = "revoked" if self.revoked else ("online" if online else "offline")
        return self.head + seconds_ago + self.middle + _STATUS_TEXT[status] + self.tail
