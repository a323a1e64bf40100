"""`rmm contracts`: what each client bought, and its SLA targets (docs/desk.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import OUTPUT_OPTION, emit, emit_json, print_plain_table
from rmm_common.durations import format_duration, parse_duration
from rmm_common.errors import InvalidArgument
from rmm_proto import operator_pb2

F = TypeVar("F", bound=Callable[..., Any])
TYPES = ("managed", "block-hours", "time-and-materials")


@click.group()
def contracts() -> None:
    """Contracts: each client's type, hours or rate, and SLA targets."""


def parse_sla(text: str) -> operator_pb2.SlaTarget:
    """Parse `critical=1h/4h[/business]` (acknowledge/resolve[/clock]) into its message."""
    severity, sep, rest = text.partition("=")
    parts = rest.split("/")
    if not sep or not severity.strip() or len(parts) not in (2, 3):
        raise CliError(
            f"--sla {text!r}: write SEVERITY=ACKNOWLEDGE/RESOLVE[/24x7|business], e.g. "
            "critical=15m/4h/24x7",
            EXIT_USAGE,
        )
    try:
        acknowledge, resolve = parse_duration(parts[0]), parse_duration(parts[1])
    except InvalidArgument as exc:
        raise CliError(f"--sla {text!r}: {exc}", EXIT_USAGE) from None
    return operator_pb2.SlaTarget(
        severity=severity.strip(),
        acknowledge_seconds=acknowledge,
        resolve_seconds=resolve,
        clock=parts[2].strip() if len(parts) == 3 else "24x7",
    )


def contract_row(contract: operator_pb2.ContractInfo) -> dict[str, Any]:
    """Return a contract as JSON-ready data (terms its type does not take are null)."""

    def optional(name: str) -> float | None:
        return float(getattr(contract, name)) if contract.HasField(name) else None

    return {
        "id": contract.id,
        "client": contract.client,
        "type": contract.type,
        "hours_per_period": optional("hours_per_period"),
        "warn_below_hours": optional("warn_below_hours"),
        "period": contract.period,
        "rate": optional("rate"),
        "currency": contract.currency,
        "business_hours": contract.business_hours,
        "holidays": list(contract.holidays),
        "sla": {
            target.severity: {
                "acknowledge_seconds": target.acknowledge_seconds,
                "resolve_seconds": target.resolve_seconds,
                "clock": target.clock,
            }
            for target in contract.sla
        },
        "created_at": contract.created_at,
        "created_by": contract.created_by,
        "updated_at": contract.updated_at,
        "updated_by": contract.updated_by,
    }


def _terms(contract: operator_pb2.ContractInfo) -> str:
    if contract.type == "block-hours":
        warn = (
            f", warn below {contract.warn_below_hours:g} h"
            if contract.HasField("warn_below_hours")
            else ""
        )
        return f"{contract.hours_per_period:g} h a {contract.period}{warn}"
    if contract.type == "time-and-materials":
        return f"{contract.rate:g} {contract.currency} an hour"
    return "managed"


def _sla_text(contract: operator_pb2.ContractInfo) -> str:
    return ", ".join(
        f"{t.severity} {format_duration(t.acknowledge_seconds)}/"
        f"{format_duration(t.resolve_seconds)} {t.clock}"
        for t in contract.sla
    )


def _line(contract: operator_pb2.ContractInfo) -> str:
    sla = _sla_text(contract) or "no SLA targets"
    return (
        f"contract of {contract.client}: {contract.type}, {_terms(contract)}; SLA {sla} "
        f"(business hours {contract.business_hours}"
        + (f"; holidays {', '.join(contract.holidays)}" if contract.holidays else "")
        + ")"
    )


def _request(
    client: str,
    kind: str,
    hours: float | None,
    warn_below: float | None,
    rate: float | None,
    currency: str,
    business_hours: str,
    sla: tuple[str, ...],
    holidays: tuple[str, ...] = (),
    clear_holidays: bool = False,
) -> operator_pb2.ContractTermsRequest:
    request = operator_pb2.ContractTermsRequest(
        client=client,
        type=kind,
        currency=currency,
        business_hours=business_hours,
        sla=[parse_sla(item) for item in sla],
        holidays=holidays,
        clear_holidays=clear_holidays,
    )
    if hours is not None:
        request.hours_per_period = hours
    if warn_below is not None:
        request.warn_below_hours = warn_below
    if rate is not None:
        request.rate = rate
    return request


def _term_options(required_type: bool) -> Callable[[F], F]:
    def decorate(command: F) -> F:
        for option in reversed(
            [
                click.option(
                    "--type",
                    "kind",
                    type=click.Choice(TYPES),
                    required=required_type,
                    default=None,
                    help="What the client bought.",
                ),
                click.option("--hours", type=float, help="Block hours: hours a month."),
                click.option(
                    "--warn-below", type=float, help="Block hours: warn under this many left."
                ),
                click.option("--rate", type=float, help="Time and materials: rate an hour."),
                click.option("--currency", default="", help="3-letter code (default USD)."),
                click.option(
                    "--business-hours",
                    default="",
                    help="When a business-hours SLA clock runs, in each site's time zone: "
                    "DAYS HH:MM-HH:MM clauses joined by ';', e.g. 'mon-fri 08:00-18:00; sat "
                    "09:00-12:00' (default 'mon-fri 08:00-18:00').",
                ),
                click.option(
                    "--holiday",
                    "holidays",
                    multiple=True,
                    metavar="YYYY-MM-DD",
                    help="A day without business hours (repeat it); on update the dates given "
                    "replace the list.",
                ),
                click.option(
                    "--sla",
                    multiple=True,
                    help="SEVERITY=ACKNOWLEDGE/RESOLVE[/24x7|business], e.g. critical=15m/4h; "
                    "once per severity (critical, warning, info).",
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate


@contracts.command("create")
@click.argument("client")
@_term_options(required_type=True)
@OUTPUT_OPTION
@click.pass_obj
def contracts_create(
    conn: Connection,
    client: str,
    kind: str,
    hours: float | None,
    warn_below: float | None,
    rate: float | None,
    currency: str,
    business_hours: str,
    holidays: tuple[str, ...],
    sla: tuple[str, ...],
    output: str,
) -> None:
    """Give CLIENT its contract (admin)."""
    request = _request(
        client, kind, hours, warn_below, rate, currency, business_hours, sla, holidays
    )
    contract = conn.call(conn.stub().CreateContract, request)
    emit(output, contract_row(contract), f"created {_line(contract)}")


@contracts.command("list")
@OUTPUT_OPTION
@click.pass_obj
def contracts_list(conn: Connection, output: str) -> None:
    """List every client's contract."""
    response = conn.call(conn.stub().ListContracts, operator_pb2.ListContractsRequest())
    if output == "json":
        emit_json([contract_row(c) for c in response.contracts])
        return
    print_plain_table(
        ("CLIENT", "TYPE", "TERMS", "SLA"),
        [(c.client, c.type, _terms(c), _sla_text(c) or "-") for c in response.contracts],
    )


@contracts.command("show")
@click.argument("client")
@OUTPUT_OPTION
@click.pass_obj
def contracts_show(conn: Connection, client: str, output: str) -> None:
    """Show CLIENT's contract."""
    contract = conn.call(conn.stub().GetContract, operator_pb2.GetContractRequest(client=client))
    emit(output, contract_row(contract), _line(contract))


@contracts.command("update")
@click.argument("client")
@_term_options(required_type=False)
@click.option("--clear-holidays", is_flag=True, help="The contract has no holidays any more.")
@OUTPUT_OPTION
@click.pass_obj
def contracts_update(
    conn: Connection,
    client: str,
    kind: str | None,
    hours: float | None,
    warn_below: float | None,
    rate: float | None,
    currency: str,
    business_hours: str,
    holidays: tuple[str, ...],
    sla: tuple[str, ...],
    clear_holidays: bool,
    output: str,
) -> None:
    """Change the terms given of CLIENT's contract; SLA targets severity by severity (admin)."""
    if holidays and clear_holidays:
        raise click.UsageError(
            "--holiday replaces the list and --clear-holidays empties it: give one of them"
        )
    request = _request(
        client,
        kind or "",
        hours,
        warn_below,
        rate,
        currency,
        business_hours,
        sla,
        holidays,
        clear_holidays,
    )
    contract = conn.call(conn.stub().UpdateContract, request)
    emit(output, contract_row(contract), f"updated {_line(contract)}")
