"""The user's own help request and caller verification (docs/desk.md, issue #15).

A user on a managed host runs `rmm-agent help "the printer is offline"`: the agent sends the
description with a fresh diagnostic snapshot over its own authenticated channel, and a ticket
opens at L1 for that agent with the snapshot kept on it (the server adds the agent's open
alerts). `rmm-agent verify CODE` asks whether a code a caller read out belongs to an open
ticket of this host: one whose agent is this host, or one of this host's client that names no
agent (a problem of the whole client). Codes are compared in constant time, and wrong guesses
are bounded per agent, counted from the audit chain (so every replica and a restart see them).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from rmm_common.errors import InvalidArgument, NotFound
from rmm_common.helpdesk import (
    HELP_OPENED_BY,
    MAX_SNAPSHOT_BYTES,
    code_problem,
    help_text_problem,
    normalize_code,
    snapshot_lines,
)
from rmm_common.text import invisible_problem
from rmm_common.tokens import new_ident
from rmm_server.alerts.service import AlertService
from rmm_server.audit import AuditLog
from rmm_server.desk.tickets import MAX_TITLE, Tickets
from rmm_server.ratelimit import RateLimited
from rmm_server.storage import AgentRecord
from rmm_server.storage.alerts import AlertQuery, AlertRecord
from rmm_server.storage.tickets import TicketRecord

log = logging.getLogger(__name__)

HELP_ACTION = "RequestHelp"
VERIFY_ACTION = "VerifyTicketCode"
NO_MATCH = "no match"
MAX_LOCAL_USER = 64
WINDOW_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class HelpLimits:
    """How much one agent may ask in an hour: enough for a user, too little to flood the desk
    or to guess a code (at 10 wrong guesses an hour, a year of guessing finds one open ticket's
    code with a chance of about 1 in 10,000)."""

    help_per_hour: int = 5
    wrong_codes_per_hour: int = 10


def open_alerts_of(alerts: AlertService) -> Callable[[str], list[AlertRecord]]:
    """Return how the desk reads an agent's pending and firing alerts: those this replica
    evaluates, with their live values, and those the database holds (another replica may hold
    the agent's report stream), oldest first."""

    def read(agent_id: str) -> list[AlertRecord]:
        found = {alert.id: alert for alert in alerts.manager.open_alerts_of(agent_id)}
        query = AlertQuery(states=("pending", "firing"), agent_id=agent_id, limit=100)
        for alert in alerts.alert_store.query(query):
            found.setdefault(alert.id, alert)
        return sorted(found.values(), key=lambda alert: alert.started_at)

    return read


def audit_name(agent: AgentRecord) -> str:
    """Return who an agent's own calls are audited as."""
    return f"agent:{agent.id}"


class HelpDesk:
    """Open a user's help request as a ticket; verify a caller's code."""

    def __init__(
        self,
        tickets: Tickets,
        audit: AuditLog,
        open_alerts: Callable[[str], list[AlertRecord]],
        limits: HelpLimits | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.tickets = tickets
        self.audit = audit
        self.open_alerts = open_alerts
        self.limits = limits or HelpLimits()
        self.clock = clock or tickets.clock

    # --- help ------------------------------------------------------------------------------

    def request_help(
        self, agent: AgentRecord, text: str, snapshot: bytes, local_user: str
    ) -> TicketRecord:
        """Open a ticket at L1 for `agent` with the user's description and the snapshot."""
        try:
            data = self._checked(agent, text, snapshot, local_user)
        except (InvalidArgument, RateLimited) as error:
            self._audit(agent, HELP_ACTION, {"refused": str(error)[:500]}, "refused")
            raise
        now = self.clock()
        data["open_alerts"] = [
            {
                "id": alert.id,
                "rule": alert.rule_name,
                "severity": alert.severity,
                "state": alert.state,
                "started_at": alert.started_at,
                "value": alert.value,
                "summary": alert.annotations.get("summary", ""),
            }
            for alert in self.open_alerts(agent.id)
        ]
        data["received_at"] = now
        description = text.strip()
        user = local_user.strip() or "unknown"
        title = f"{agent.hostname}: {description}"
        if len(title) > MAX_TITLE:
            title = title[: MAX_TITLE - 1] + "…"
        facts = "\n".join(
            [
                f"asked for help on {agent.hostname} ({agent.id}) by local user {user}: "
                f"{description}",
                *snapshot_lines(data),
            ]
        )
        # An agent enrolled before its client's record existed still gets its ticket.
        self.tickets.desk.ensure_place(agent.client, agent.site, HELP_OPENED_BY, now, new_ident)
        ticket = self.tickets.open(
            agent.client,
            title,
            "warning",
            HELP_OPENED_BY,
            "L1",
            agent.site,
            agent.id,
            facts=facts,
            snapshot=json.dumps(data, sort_keys=True),
        )
        self._audit(agent, HELP_ACTION, {"ticket": ticket.id, "local_user": user}, "ok")
        log.info("HELP REQUESTED: ticket %d for agent %s by %s", ticket.id, agent.id, user)
        return ticket

    def _checked(
        self, agent: AgentRecord, text: str, snapshot: bytes, local_user: str
    ) -> dict[str, object]:
        problem = help_text_problem(text)
        if problem is None and len(local_user) > MAX_LOCAL_USER:
            problem = f"the local user name is over {MAX_LOCAL_USER} characters"
        if problem is None:
            problem = invisible_problem("the local user name", local_user)
        if problem is not None:
            raise InvalidArgument(f"help request refused: {problem}")
        if len(snapshot) > MAX_SNAPSHOT_BYTES:
            raise InvalidArgument(
                f"help request refused: its snapshot is {len(snapshot)} bytes, over the "
                f"{MAX_SNAPSHOT_BYTES} allowed"
            )
        try:
            data = json.loads(snapshot) if snapshot else {}
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidArgument(
                f"help request refused: its snapshot is not JSON ({error})"
            ) from None
        if not isinstance(data, dict):
            raise InvalidArgument("help request refused: its snapshot is not a JSON object")
        since = self.clock() - WINDOW_SECONDS
        asked = self.tickets.records.opened_since(agent.id, HELP_OPENED_BY, since)
        if asked >= self.limits.help_per_hour:
            raise RateLimited(
                f"this computer ({agent.hostname}) asked for help {asked} times in the last "
                f"hour, the most allowed: the support desk has those requests; call them, or "
                "try again in an hour",
                retry_after=WINDOW_SECONDS,
            )
        return data

    # --- verify ----------------------------------------------------------------------------

    def verify(self, agent: AgentRecord, code_text: str) -> TicketRecord | None:
        """Return the open ticket of this host whose code `code_text` is, or None."""
        problem = code_problem(code_text)
        if problem is not None:
            self._audit(agent, VERIFY_ACTION, {}, "invalid code")
            raise InvalidArgument(problem)
        now = self.clock()
        wrong = self._wrong_guesses(agent, now - WINDOW_SECONDS)
        if wrong >= self.limits.wrong_codes_per_hour:
            self._audit(agent, VERIFY_ACTION, {"wrong_last_hour": wrong}, "rate-limited")
            raise RateLimited(
                f"{wrong} wrong codes were tried on this computer ({agent.hostname}) in the last "
                "hour: no more are checked for now. If someone on the telephone keeps giving "
                "codes that do not match, they are not your support desk: hang up and call the "
                "desk at the number you know",
                retry_after=WINDOW_SECONDS,
            )
        code = normalize_code(code_text).encode()
        try:
            client_id = self.tickets.desk.client_id(agent.client)
        except NotFound:
            candidates: list[TicketRecord] = []
        else:
            candidates = self.tickets.records.open_for_host(client_id, agent.id)
        match = None
        for ticket in candidates:
            # Every candidate compared, each in constant time: how long a check takes says
            # nothing about how much of a code was right.
            if hmac.compare_digest(ticket.verify_code.encode(), code) and ticket.verify_code:
                match = ticket
        if match is None:
            self._audit(agent, VERIFY_ACTION, {}, NO_MATCH)
            return None
        self._audit(agent, VERIFY_ACTION, {"ticket": match.id}, "match")
        return match

    def _wrong_guesses(self, agent: AgentRecord, since: float) -> int:
        return self.audit.store.count(audit_name(agent), VERIFY_ACTION, NO_MATCH, since)

    def _audit(
        self, agent: AgentRecord, action: str, details: dict[str, object], outcome: str
    ) -> None:
        self.audit.append(
            audit_name(agent), action, agent.id, {"host": agent.hostname, **details}, outcome
        )
