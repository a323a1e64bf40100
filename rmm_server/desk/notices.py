"""A ticket's escalation told to its new tier through the alerts' notification routing: the
same receivers and routes (by tier, client, severity...) that alert escalations reach."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from rmm_server.alerts.service import Submit
from rmm_server.desk.tickets import TIERS
from rmm_server.notify.model import AlertNotice
from rmm_server.storage.tickets import TicketRecord

log = logging.getLogger(__name__)

RULE = "TicketEscalated"
HOURS_RULE = "BlockHoursLow"


def ticket_notice(ticket: TicketRecord, reason: str) -> AlertNotice:
    """Return the notice that tells a ticket's tier it has the ticket now."""
    position = TIERS.index(ticket.tier) if ticket.tier in TIERS else 0
    return AlertNotice(
        alert_id=f"ticket-{ticket.id}",
        rule=RULE,
        status="firing",
        severity=ticket.priority,
        tier=ticket.tier,
        client=ticket.client,
        site=ticket.site,
        agent_id=ticket.agent_id,
        hostname="",
        labels={"ticket": str(ticket.id)},
        annotations={
            "summary": (
                f"ticket {ticket.id} for {ticket.client} is at {ticket.tier}: {ticket.title}"
            ),
            "description": reason,
        },
        value=None,
        starts_at=ticket.opened_at,
        ends_at=None,
        escalated_from=TIERS[position - 1] if position > 0 else None,
    )


async def tell_tiers(submit: Submit | None, escalated: Iterable[TicketRecord]) -> None:
    """Hand each escalated ticket to the notifiers (a notifier's failure is logged only)."""
    if submit is None:
        return
    for ticket in escalated:
        reason = ticket.events[-1].text if ticket.events else "escalated"
        try:
            result = submit(ticket_notice(ticket, reason))
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # a notifier problem must not undo the escalation
            log.exception("telling %s of ticket %d failed", ticket.tier, ticket.id)


def hours_notice(ticket: TicketRecord, warning: str) -> AlertNotice:
    """Return the notice that a client's block hours are under its contract's threshold."""
    return AlertNotice(
        alert_id=f"hours-{ticket.client_id}",
        rule=HOURS_RULE,
        status="firing",
        severity="warning",
        tier=ticket.tier,
        client=ticket.client,
        site=ticket.site,
        agent_id=ticket.agent_id,
        hostname="",
        labels={"ticket": str(ticket.id)},
        annotations={"summary": warning, "description": f"time logged on ticket {ticket.id}"},
        value=None,
        starts_at=ticket.updated_at,
        ends_at=None,
    )


async def tell_hours_low(submit: Submit | None, ticket: TicketRecord, warning: str) -> None:
    """Hand a low-block-hours warning to the notifiers (a notifier's failure is logged only)."""
    if submit is None or not warning:
        return
    try:
        result = submit(hours_notice(ticket, warning))
        if asyncio.iscoroutine(result):
            await result
    except Exception:  # the time entry is stored; only the warning's delivery failed
        log.exception("the block hours warning for ticket %d was not handed over", ticket.id)
