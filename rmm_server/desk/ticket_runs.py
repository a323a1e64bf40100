"""Runs done for a ticket, from the CLI (`rmm run --ticket N`) and the dashboard alike.

A run for a ticket is refused before anything is sent when the ticket is not open, and what it
sent (the action, each agent and its command id) is written on the ticket as soon as it is
sent, so the next tier reads what was already done. The ticket number also travels signed in
each command, where the host's consent prompt names it.
"""

from __future__ import annotations

import asyncio

from rmm_common.errors import InvalidArgument
from rmm_server.desk.tickets import Tickets
from rmm_server.runs import Run, RunRequest, RunService


async def start_for_ticket(runs: RunService, request: RunRequest, tickets: Tickets | None) -> Run:
    """Start `request`'s run; with `request.ticket`, check the ticket first and note the run."""
    if not request.ticket:
        return await runs.start(request)
    if tickets is None:
        raise InvalidArgument(
            f"ticket {request.ticket}: this server keeps no tickets; send it without a ticket"
        )
    await asyncio.to_thread(tickets.check_open, request.ticket)
    run = await runs.start(request)
    await asyncio.to_thread(tickets.run_started, request.ticket, run, request.operator)
    return run


def ticket_number(text: str) -> int:
    """Read a form's ticket field: empty is no ticket; else a ticket number, or a clear error."""
    text = text.strip().removeprefix("#")
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise InvalidArgument(
            f"ticket {text[:40]!r}: give a ticket's number, e.g. 42 (rmm tickets list), or "
            "leave it empty for work outside a ticket"
        )
    return int(text)
