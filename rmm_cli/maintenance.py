"""`rmm maintenance`: maintenance windows."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.table import Table

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import OUTPUT_OPTION, emit, emit_json, print_table, shown, when
from rmm_common.durations import format_duration, parse_duration
from rmm_common.errors import InvalidArgument
from rmm_proto import operator_pb2


@click.group()
def maintenance() -> None:
    """Maintenance windows: scheduled quiet for a scope of agents."""


def window_row(window: operator_pb2.MaintenanceInfo) -> dict[str, Any]:
    """Return a maintenance window as JSON-ready data."""
    return {
        "id": window.id,
        "name": window.name,
        "schedule": window.schedule or None,
        "start_at": window.start_at or None,
        "duration_seconds": window.duration_seconds,
        "timezone": window.timezone,
        "clients": list(window.clients),
        "sites": list(window.sites),
        "agents": list(window.agents),
        "tags": list(window.tags),
        "active_now": window.active_now,
        "current_end": window.current_end or None,
        "next_start": window.next_start or None,
        "ended_at": window.ended_at or None,
        "created_by": window.created_by,
        "comment": window.comment,
    }


@maintenance.command("add")
@click.option("--name", required=True)
@click.option("--schedule", default="", help="Cron in the time zone, e.g. '0 2 * * sun'.")
@click.option("--start", "start", default="", help="One-off: 'now' or a unix time.")
@click.option("--duration", required=True, help="e.g. 2h.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone of the site.")
@click.option("--client", "clients", multiple=True)
@click.option("--site", "sites", multiple=True)
@click.option(
    "--agent",
    "agents",
    multiple=True,
    help="An agent id, the start of one, or host=NAME (one agent only); the window keeps its id.",
)
@click.option("--tag", "tags", multiple=True)
@click.option("--comment", default="")
@OUTPUT_OPTION
@click.pass_obj
def maintenance_add(
    conn: Connection,
    name: str,
    schedule: str,
    start: str,
    duration: str,
    timezone: str,
    clients: tuple[str, ...],
    sites: tuple[str, ...],
    agents: tuple[str, ...],
    tags: tuple[str, ...],
    comment: str,
    output: str,
) -> None:
    """Add a recurring (--schedule) or one-off (--start) maintenance window."""
    try:
        seconds = parse_duration(duration)
    except InvalidArgument as exc:
        raise CliError(f"--duration: {exc}", EXIT_USAGE) from None
    start_at = 0.0
    if start:
        try:
            start_at = time.time() if start == "now" else float(start)
        except ValueError:
            raise CliError("--start takes 'now' or a unix time", EXIT_USAGE) from None
    window = conn.call(
        conn.stub().AddMaintenance,
        operator_pb2.AddMaintenanceRequest(
            name=name,
            schedule=schedule,
            start_at=start_at,
            duration_seconds=seconds,
            timezone=timezone,
            clients=clients,
            sites=sites,
            agents=agents,
            tags=tags,
            comment=comment,
        ),
    )
    state = "in force now" if window.active_now else f"next {when(window.next_start)}"
    emit(
        output, window_row(window), f"maintenance window {window.id} ({window.name}) added, {state}"
    )


@maintenance.command("list")
@click.option("--all", "include_ended", is_flag=True, help="Include ended windows.")
@OUTPUT_OPTION
@click.pass_obj
def maintenance_list(conn: Connection, include_ended: bool, output: str) -> None:
    """List maintenance windows and whether each is in force now."""
    response = conn.call(
        conn.stub().ListMaintenance,
        operator_pb2.ListMaintenanceRequest(include_ended=include_ended),
    )
    if output == "json":
        emit_json([window_row(w) for w in response.windows])
        return
    table = Table("ID", "NAME", "SCHEDULE", "DURATION", "TZ", "SCOPE", "NOW", "NEXT")
    for w in response.windows:
        scope = (
            " ".join(
                [f"client={c}" for c in w.clients]
                + [f"site={s}" for s in w.sites]
                + [f"agent={a}" for a in w.agents]
                + [f"tag={t}" for t in w.tags]
            )
            or "everyone"
        )
        table.add_row(
            w.id,
            shown(w.name),
            shown(w.schedule or "one-off"),
            format_duration(w.duration_seconds),
            shown(w.timezone),
            shown(scope),
            f"until {when(w.current_end)}" if w.active_now else "-",
            when(w.next_start) if w.next_start else "-",
        )
    print_table(table)


@maintenance.command("end")
@click.argument("window_id")
@OUTPUT_OPTION
@click.pass_obj
def maintenance_end(conn: Connection, window_id: str, output: str) -> None:
    """End a maintenance window for good."""
    window = conn.call(conn.stub().EndMaintenance, operator_pb2.EndMaintenanceRequest(id=window_id))
    emit(output, window_row(window), f"maintenance window {window.id} ({window.name}) ended")
