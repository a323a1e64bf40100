"""`rmm reports`: a client's month against its contract, and recurring problems (docs/desk.md)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import click

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import OUTPUT_OPTION, emit_json, print_plain_table
from rmm_common.durations import format_duration, parse_duration
from rmm_common.errors import InvalidArgument
from rmm_proto import operator_pb2

# csv: one table per section (agents, alerts, tickets, hours), each with its header row, a
# blank line between; the first column names the section on every row.
AGENT_COLUMNS = (
    "agent_id",
    "hostname",
    "site",
    "availability",
    "offline_seconds",
    "maintenance_seconds",
    "enrolled_seconds",
    "patch_compliant",
)
ALERT_COLUMNS = (
    "count",
    "acknowledged",
    "resolved",
    "acknowledge_median_seconds",
    "acknowledge_p90_seconds",
    "resolve_median_seconds",
    "resolve_p90_seconds",
)
SLA_COLUMNS = (
    "clock",
    "acknowledge_seconds",
    "resolve_seconds",
    "acknowledge_met",
    "acknowledge_missed",
    "acknowledge_open",
    "resolve_met",
    "resolve_missed",
    "resolve_open",
)
TICKET_COLUMNS = ("opened", "resolved", "closed", "sla_breached")
HOUR_COLUMNS = ("period", "entries", "used", "included", "left", "billable_amount", "currency")


@click.group()
def reports() -> None:
    """Reports: a client's month against its contract; the most frequent problems."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(report: dict[str, Any]) -> str:
    """Return the report as CSV: one table per section, a blank line between."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", *AGENT_COLUMNS))
    for agent in report["availability"]["agents"]:
        writer.writerow(("agents", *(_cell(agent[name]) for name in AGENT_COLUMNS)))
    writer.writerow(())
    writer.writerow(("section", "severity", *ALERT_COLUMNS, *(f"sla_{n}" for n in SLA_COLUMNS)))
    for severity, figures in report["alerts"].items():
        sla = figures["sla"] or {}
        writer.writerow(
            (
                "alerts",
                severity,
                *(_cell(figures[name]) for name in ALERT_COLUMNS),
                *(_cell(sla.get(name)) for name in SLA_COLUMNS),
            )
        )
    writer.writerow(())
    writer.writerow(("section", "tier", *TICKET_COLUMNS))
    for tier, figures in report["tickets"].items():
        writer.writerow(("tickets", tier, *(_cell(figures[name]) for name in TICKET_COLUMNS)))
    writer.writerow(())
    writer.writerow(("section", *HOUR_COLUMNS))
    writer.writerow(("hours", *(_cell(report["hours"][name]) for name in HOUR_COLUMNS)))
    return out.getvalue()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.3f}%"


def _dur(value: float | None) -> str:
    return "-" if value is None else format_duration(value)


def _print_contract(report: dict[str, Any]) -> None:
    terms = report["contract"]
    state = "" if report["complete"] else ", month not over"
    click.echo(
        f"{report['client']}, {report['month']} ({report['time_zone']}{state}); contract: "
        f"{terms['type'] if terms else 'none'}"
    )
    figures = report["availability"]
    patches = figures["patches"]
    click.echo(
        f"availability {_pct(figures['overall'])} (maintenance excluded); patch compliance "
        f"{patches['compliant']}/{patches['agents_listing']} agents listing updates"
    )
    print_plain_table(
        ("HOST", "SITE", "AVAILABILITY", "OFFLINE", "MAINTENANCE", "PATCHES"),
        [
            (
                agent["hostname"] or agent["agent_id"],
                agent["site"],
                _pct(agent["availability"]),
                _dur(agent["offline_seconds"]),
                _dur(agent["maintenance_seconds"]),
                {None: "-", True: "compliant", False: "missing"}[agent["patch_compliant"]],
            )
            for agent in figures["agents"]
        ],
    )
    click.echo()
    rows = []
    for severity, alert in report["alerts"].items():
        sla = alert["sla"]
        rows.append(
            (
                severity,
                str(alert["count"]),
                f"{_dur(alert['acknowledge_median_seconds'])}/"
                f"{_dur(alert['acknowledge_p90_seconds'])}",
                f"{_dur(alert['resolve_median_seconds'])}/{_dur(alert['resolve_p90_seconds'])}",
                (
                    f"{sla['acknowledge_met']} met, {sla['acknowledge_missed']} missed"
                    f", {sla['acknowledge_open']} open"
                    if sla
                    else "-"
                ),
                (
                    f"{sla['resolve_met']} met, {sla['resolve_missed']} missed"
                    f", {sla['resolve_open']} open"
                    if sla
                    else "-"
                ),
            )
        )
    print_plain_table(
        ("ALERTS", "FIRED", "ACK MEDIAN/P90", "RESOLVE MEDIAN/P90", "ACK SLA", "RESOLVE SLA"),
        rows,
    )
    click.echo()
    print_plain_table(
        ("TICKETS", "OPENED", "RESOLVED", "CLOSED", "SLA ESCALATED"),
        [
            (tier, *(str(t[name]) for name in TICKET_COLUMNS))
            for tier, t in report["tickets"].items()
        ],
    )
    hours = report["hours"]
    line = f"\nhours {hours['used']:g} used in {hours['period']} (UTC)"
    if hours["included"] is not None:
        line += f", {hours['included']:g} included, {hours['left']:g} left"
    if hours["billable_amount"] is not None:
        line += f", billable {hours['billable_amount']:g} {hours['currency']}"
    click.echo(line)


@reports.command("contract")
@click.option("--client", required=True, help="The client's name.")
@click.option("--month", required=True, help="YYYY-MM, in the client's time zone.")
@click.option(
    "--time-zone",
    default="",
    help="IANA zone of the month (default: the zone the client's sites share, else the zone "
    "of its site with the most agents).",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts, csv (one table per section), html (one page).",
)
@click.pass_obj
def reports_contract(
    conn: Connection, client: str, month: str, time_zone: str, output: str
) -> None:
    """A client's month: availability, alerts against the SLA, tickets, hours, patches."""
    request = operator_pb2.ContractReportRequest(
        client=client, month=month, time_zone=time_zone, html=output == "html"
    )
    response = conn.call(conn.stub().GetContractReport, request)
    if output == "html":
        click.echo(response.html, nl=False)
        return
    report = json.loads(response.report_json)
    if output == "json":
        emit_json(report)
    elif output == "csv":
        click.echo(to_csv(report), nl=False)
    else:
        _print_contract(report)


@reports.command("trends")
@click.option("--since", default="30d", show_default=True, help="The period, e.g. 7d, 30d.")
@click.option("--client", default="", help="One client's (default: every client's).")
@click.option("--limit", type=int, default=10, show_default=True, help="Rows per list.")
@OUTPUT_OPTION
@click.pass_obj
def reports_trends(conn: Connection, since: str, client: str, limit: int, output: str) -> None:
    """The most frequent alert rules, hosts, clients and ticket categories, against the period
    before."""
    try:
        seconds = parse_duration(since)
    except InvalidArgument as exc:
        raise CliError(f"--since {since!r}: {exc}", EXIT_USAGE) from None
    if limit < 1:
        raise CliError(f"--limit {limit}: give 1 or more", EXIT_USAGE)
    request = operator_pb2.TrendsRequest(since_seconds=seconds, client=client, limit=limit)
    report = json.loads(conn.call(conn.stub().GetTrends, request).report_json)
    if output == "json":
        emit_json(report)
        return
    period = format_duration(report["since_seconds"])
    click.echo(f"the last {period} against the {period} before{' for ' + client if client else ''}")
    for title, key, name in (
        ("ALERT RULE", "alert_rules", lambda item: item["rule"]),
        ("HOST", "hosts", lambda item: f"{item['hostname']} ({item['client']})"),
        ("CLIENT", "clients", lambda item: item["client"]),
        ("TICKET CATEGORY", "ticket_categories", lambda item: item["category"]),
    ):
        click.echo()
        items = report[key]
        if not items:
            click.echo(f"{title}: none")
            continue
        print_plain_table(
            (title, "COUNT", "BEFORE", "CHANGE"),
            [
                (name(item), str(item["count"]), str(item["previous"]), f"{item['change']:+d}")
                for item in items
            ],
        )
