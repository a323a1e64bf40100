"""`rmm alerts`: open and past alerts; acknowledge, show, silence."""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

import click

from rmm_cli.agents import TABLE_PAGE, agent_row
from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import (
    OUTPUT_OPTION,
    emit,
    emit_json,
    emit_json_rows,
    finite_or_none,
    print_table,
    shown,
    when,
)
from rmm_common.agent_words import printable_name
from rmm_common.durations import format_duration, parse_duration
from rmm_common.errors import InvalidArgument

if TYPE_CHECKING:
    from rmm_proto import operator_pb2

# grpc, the protocol's messages, rich and rmm_cli.silences (which draws with rich) are imported
# inside the commands that use them: `rmm alerts list -o json` needs no rich.


@click.group()
def alerts() -> None:
    """Alerts raised by the policies."""


def alert_row(alert: operator_pb2.AlertInfo) -> dict[str, Any]:
    """Return an alert as JSON-ready data."""
    return {
        "id": alert.id,
        "suppressed_by": alert.suppressed_by or None,
        "history": json.loads(alert.history_json) if alert.history_json else [],
        "rule": alert.rule,
        "rule_key": alert.rule_key,
        "state": alert.state,
        "severity": alert.severity,
        "tier": alert.tier,
        "agent_id": alert.agent_id,
        "hostname": alert.hostname,
        "client": alert.client,
        "site": alert.site,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "value": finite_or_none(alert.value),
        "started_at": alert.started_at,
        "fired_at": alert.fired_at or None,
        "resolved_at": alert.resolved_at or None,
        "acknowledged_by": alert.acknowledged_by or None,
        "acknowledged_at": alert.acknowledged_at or None,
        "ack_comment": alert.ack_comment or None,
    }


@alerts.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["pending", "firing", "resolved"]),
    help="Only these states (repeatable; default: pending and firing).",
)
@click.option("--client", default="", help="Only this client.")
@click.option("--severity", type=click.Choice(["info", "warning", "critical"]), default=None)
@click.option(
    "--agent", default="", help="Only this agent (id, id prefix, or host=NAME for a hostname)."
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=f"At most this many; 0: the server's most (1,000) [default: 1,000 with --output json, "
    f"{TABLE_PAGE} in a table].",
)
@OUTPUT_OPTION
@click.pass_obj
def alerts_list(
    conn: Connection,
    states: tuple[str, ...],
    client: str,
    severity: str | None,
    agent: str,
    limit: int | None,
    output: str,
) -> None:
    """List alerts, most recently changed first."""
    from rmm_proto import operator_pb2  # noqa: PLC0415

    if limit is None:
        limit = 0 if output == "json" else TABLE_PAGE
    response = conn.call(
        conn.stub().ListAlerts,
        operator_pb2.ListAlertsRequest(
            states=list(states),
            client=client,
            severity=severity or "",
            agent=agent,
            # One more than shown says whether more match.
            limit=limit + 1 if limit and output != "json" else limit,
        ),
    )
    if output == "json":
        emit_json_rows([[alert_row(alert) for alert in response.alerts]])
        return
    more = bool(limit) and len(response.alerts) > limit
    listed = list(response.alerts)[:limit] if limit else list(response.alerts)
    now = time.time()
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(
        "ID",
        "STATE",
        "SEVERITY",
        "TIER",
        "RULE",
        "CLIENT/SITE",
        "HOST",
        "LABELS",
        "VALUE",
        "SINCE",
        "QUIET",
        "ACK",
        "SUMMARY",
    )
    colours = {"critical": "red", "warning": "yellow", "info": "blue"}
    for alert in listed:
        colour = colours.get(alert.severity, "white")
        table.add_row(
            alert.id,
            alert.state,
            f"[{colour}]{alert.severity}[/]",
            alert.tier,
            alert.rule,
            f"{alert.client}/{alert.site}",
            escape(f"{printable_name(alert.hostname)} [{alert.agent_id[:12]}]"),
            shown(",".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))),
            "-" if math.isnan(alert.value) else f"{alert.value:g}",
            when(alert.fired_at or alert.started_at, now),
            alert.suppressed_by or "-",
            alert.acknowledged_by or "-",
            shown(alert.annotations.get("summary", "")),
        )
    print_table(table)
    if not response.alerts:
        click.echo("no alerts match", err=True)
    elif more:
        click.echo(
            f"the {limit:,} most recently changed shown; more match: a larger --limit, or narrow "
            "with --state, --client, --severity, --agent",
            err=True,
        )


@alerts.command("ack")
@click.argument("alert_id")
@click.option("--comment", required=True, help="What you are doing about it.")
@OUTPUT_OPTION
@click.pass_obj
def alerts_ack(conn: Connection, alert_id: str, comment: str, output: str) -> None:
    """Acknowledge an alert: you own it, and it stops escalating."""
    from rmm_proto import operator_pb2  # noqa: PLC0415

    alert = conn.call(
        conn.stub().AckAlert, operator_pb2.AckAlertRequest(id=alert_id, comment=comment)
    )
    emit(
        output,
        alert_row(alert),
        f"alert {alert.id} ({alert.rule} on {printable_name(alert.hostname)} "
        f"[{alert.agent_id[:12]}]) acknowledged",
    )


@alerts.command("show")
@click.argument("alert_id")
@OUTPUT_OPTION
@click.pass_obj
def alerts_show(conn: Connection, alert_id: str, output: str) -> None:
    """Everything about one alert: rule, agent, labels, history, silences and notifications.

    ALERT_ID is its id, or a unique start of an open alert's id.
    """
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from rmm_cli.silences import silence_row  # noqa: PLC0415
    from rmm_proto import operator_pb2  # noqa: PLC0415

    detail = conn.call(conn.stub().GetAlert, operator_pb2.GetAlertRequest(id=alert_id))
    alert = detail.alert
    notifications = [
        {
            "at": n.at,
            "receiver": n.receiver,
            "notifier": n.notifier,
            "status": n.status,
            "delivered": n.delivered,
            "error": n.error or None,
            "group_key": n.group_key,
        }
        for n in detail.notifications
    ]
    data = {
        **alert_row(alert),
        "rule_now": (
            {"expr": detail.expr, "for_seconds": detail.for_seconds, "source": detail.rule_source}
            if detail.expr
            else None
        ),
        "agent": agent_row(detail.agent, time.time()) if detail.HasField("agent") else None,
        "silences": [silence_row(s) for s in detail.silences],
        "notifications": notifications,
    }
    if output == "json":
        emit_json(data)
        return
    now = time.time()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    agent_line = (
        f"{printable_name(alert.hostname)} [{alert.agent_id[:12]}] in {alert.client}/{alert.site}"
    )
    moved = (detail.agent.client, detail.agent.site) != (alert.client, alert.site)
    if detail.HasField("agent") and moved:
        agent_line += f" (now in {detail.agent.client}/{detail.agent.site})"
    rows: list[tuple[str, str]] = [
        ("alert", alert.id),
        ("rule", f"{alert.rule} ({alert.rule_key})"),
        ("expr", f"{detail.expr}  for {format_duration(detail.for_seconds)}  [{detail.rule_source}]"
         if detail.expr else "- (the policies in force no longer have this rule for the agent)"),
        ("agent", agent_line if detail.HasField("agent") else f"{agent_line} (agent gone)"),
        ("state", f"{alert.state}, {alert.severity}, tier {alert.tier}"),
        ("value", "-" if math.isnan(alert.value) else f"{alert.value:g}"),
        ("started", when(alert.started_at, now)),
        ("fired", when(alert.fired_at, now)),
        ("resolved", when(alert.resolved_at, now)),
        ("acknowledged", f"by {alert.acknowledged_by} {when(alert.acknowledged_at, now)}: "
         f"{alert.ack_comment}" if alert.acknowledged_by else "no"),
        ("quiet", alert.suppressed_by or "no: notifications go out"),
    ]  # fmt: skip
    rows += [(f"label {k}", v) for k, v in sorted(alert.labels.items())]
    rows += [(f"annotation {k}", v) for k, v in sorted(alert.annotations.items())]
    for key, value in rows:
        facts.add_row(escape(key), escape(value))
    print_table(facts)
    history = Table("WHEN", "EVENT", "BY", "DETAIL", title="history")
    for entry in data["history"]:
        history.add_row(
            when(float(entry.get("at", 0)), now),
            escape(str(entry.get("event", ""))),
            escape(str(entry.get("by", ""))),
            escape(str(entry.get("detail", ""))),
        )
    print_table(history)
    silenced = Table("SILENCE", "STATE", "MATCHERS", "BY", "COMMENT", title="matching silences")
    for silence in detail.silences:
        silenced.add_row(
            silence.id,
            silence.state,
            escape(silence.matchers),
            escape(silence.created_by),
            escape(silence.comment),
        )
    print_table(silenced)
    told = Table("WHEN", "RECEIVER", "NOTIFIER", "STATUS", "OUTCOME", title="notifications")
    for n in detail.notifications:
        told.add_row(
            when(n.at, now),
            escape(n.receiver),
            n.notifier,
            n.status,
            "delivered" if n.delivered else escape(f"FAILED: {n.error}"),
        )
    print_table(told)


@alerts.command("silence")
@click.option(
    "--match",
    "matchers",
    required=True,
    help=(
        "Matchers, e.g. 'rule=DiskLow,client=acme' (=, != and =~ regex). agent=ID takes an id "
        "or its start (the full id is kept); hostname= needs client= beside it."
    ),
)
@click.option("--for", "duration", required=True, help="How long, e.g. 2h.")
@click.option("--comment", required=True, help="Why.")
@OUTPUT_OPTION
@click.pass_obj
def alerts_silence(
    conn: Connection, matchers: str, duration: str, comment: str, output: str
) -> None:
    """Silence notifications of matching alerts for a while (they still show)."""
    from rmm_cli.silences import silence_row  # noqa: PLC0415
    from rmm_proto import operator_pb2  # noqa: PLC0415

    try:
        seconds = parse_duration(duration)
    except InvalidArgument as exc:
        raise CliError(f"--for: {exc}", EXIT_USAGE) from None
    silence = conn.call(
        conn.stub().CreateSilence,
        operator_pb2.CreateSilenceRequest(
            matchers=matchers, duration_seconds=seconds, comment=comment
        ),
    )
    emit(
        output,
        silence_row(silence),
        f"silence {silence.id} on {silence.matchers} until {when(silence.ends_at)}",
    )
