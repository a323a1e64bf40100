"""Alerts drive their tickets: a firing alert of a rule with `ticket: L1|L2|L3` opens (or
reopens) a ticket at that tier, and its ticket resolves when the alert resolves."""

from __future__ import annotations

import asyncio

from rmm_server.desk.tickets import Tickets
from rmm_server.storage import AgentRecord
from rmm_server.storage.alerts import AlertRecord


class AlertTickets:
    """The alert service's ticket hook (AlertService.ticket_hook)."""

    def __init__(self, tickets: Tickets) -> None:
        self.tickets = tickets

    async def on_transition(
        self, alert: AlertRecord, event: str, tier: str, agent: AgentRecord
    ) -> None:
        """Open, reopen or resolve the ticket of `alert` as its `event` says."""
        if event == "firing" and tier:
            await asyncio.to_thread(self.tickets.alert_fired, alert, tier, agent)
        elif event == "resolved":
            await asyncio.to_thread(self.tickets.alert_resolved, alert)
