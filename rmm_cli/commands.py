"""`rmm commands`: remote actions sent before; list them, show one in full."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from rmm_cli.actions import cut, process_table, service_table
from rmm_cli.client import Connection
from rmm_cli.output import OUTPUT_OPTION, emit_json, print_table, when
from rmm_cli.targets import (
    Outcome,
    printable,
    result_summary,
    status_cell,
    status_name,
)
from rmm_common.agent_words import agent_label, printable_name
from rmm_common.durations import format_duration
from rmm_proto import commands_pb2, operator_pb2

STATUS_NAMES = [status_name(value) for value in commands_pb2.CommandStatus.values() if value != 0]


@click.group()
def commands() -> None:
    """Remote actions sent before: list them, show one in full."""


@commands.command("list")
@click.option(
    "--agent", default="", help="Only this agent (id, id prefix, or host=NAME for a hostname)."
)
@click.option("--run", "run_id", default="", help="Only this run (the id rmm run shows).")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUS_NAMES),
    help="Only these statuses (repeatable).",
)
@click.option("--limit", type=click.IntRange(min=0), default=0, help="At most this many (0: 100).")
@OUTPUT_OPTION
@click.pass_obj
def commands_list(
    conn: Connection,
    agent: str,
    run_id: str,
    statuses: tuple[str, ...],
    limit: int,
    output: str,
) -> None:
    """List remote actions, newest first."""
    response = conn.call(
        conn.stub().ListCommands,
        operator_pb2.ListCommandsRequest(
            agent=agent,
            run_id=run_id,
            statuses=[f"COMMAND_{s.upper()}" for s in statuses],
            limit=limit,
        ),
    )
    outcomes = [Outcome(info) for info in response.commands]
    if output == "json":
        emit_json([{**o.to_json(), "fields": command_fields(o.info)} for o in outcomes])
        return
    now = time.time()
    table = Table("ID", "ISSUED", "AGENT", "ACTION", "SUMMARY", "STATUS", "BY", "RESULT")
    for outcome in outcomes:
        info = outcome.info
        table.add_row(
            info.id,
            when(info.issued_at, now),
            escape(agent_label(info.hostname, info.agent_id)),
            info.action,
            escape(cut(info.summary, 50)),
            status_cell(outcome),
            escape(info.operator),
            escape(cut(outcome.head(), 60)),
        )
    print_table(table)
    if not outcomes:
        click.echo("no commands match", err=True)


def command_fields(info: operator_pb2.CommandInfo) -> dict[str, Any]:
    """Return the command's fields that can change what runs ({} from an older server)."""
    try:
        fields = json.loads(info.fields_json) if info.fields_json else {}
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) else {}


def _show_text(title: str, text: str, truncated: bool) -> None:
    click.echo(f"--- {title}{' (truncated by the agent)' if truncated else ''} ---")
    click.echo(printable(text).rstrip("\n"))


@commands.command("show")
@click.argument("command_id")
@OUTPUT_OPTION
@click.pass_obj
def commands_show(conn: Connection, command_id: str, output: str) -> None:
    """Show one remote action in full: what, who, when, and its whole result."""
    info = conn.call(conn.stub().GetCommand, operator_pb2.GetCommandRequest(id=command_id))
    outcome = Outcome(info)
    if output == "json":
        emit_json({**outcome.to_json(), "fields": command_fields(info)})
        return
    now = time.time()
    print_table(_facts_table(outcome, now))
    _show_result(outcome, now)


def _fact_rows(outcome: Outcome, now: float) -> list[tuple[str, str]]:
    """Return the facts `rmm commands show` prints about a command, as (key, value) rows."""
    info = outcome.info
    result = info.result
    duration = outcome.duration_seconds
    rows: list[tuple[str, str]] = [
        ("id", info.id),
        ("run", info.run_id or "-"),
        ("agent", f"{info.agent_id} (agent-reported hostname {printable_name(info.hostname)})"),
        ("action", f"{info.action}: {printable(info.summary)}"),
        ("operator", info.operator or "-"),
        ("status", status_cell(outcome)),
        ("issued", when(info.issued_at, now)),
        ("sent", when(info.sent_at, now)),
        ("finished", when(info.finished_at, now)),
        ("expires", when(info.expires_at, now)),
        ("took", format_duration(duration) if duration is not None else "-"),
    ]
    # Everything that could change what ran: args, env, params, working directory, timeout...
    for key, value in sorted(command_fields(info).items()):
        if key != "action":
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            rows.append((f"  {key}", printable(shown)))
    if outcome.exit_code is not None:
        rows.append(("exit code", str(outcome.exit_code)))
    if outcome.error:
        rows.append(("error", printable(outcome.error)))
    if result.duplicate:
        rows.append(("note", "the agent had run it before and answered with the kept result"))
    return rows


def _facts_table(outcome: Outcome, now: float) -> Table:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key, value in _fact_rows(outcome, now):
        facts.add_row(key, value if key == "status" else escape(value))
    return facts


def _show_script(outcome: Outcome, now: float) -> None:
    script = outcome.info.result.script
    _show_text("stdout", script.stdout, script.stdout_truncated)
    _show_text("stderr", script.stderr, script.stderr_truncated)


def _show_kill(outcome: Outcome, now: float) -> None:
    kill = outcome.info.result.kill
    if kill.killed:
        killed = Table("PID", "NAME", "USER", "COMMAND", title="ended")
        for process in kill.killed:
            killed.add_row(
                str(process.pid),
                escape(cut(process.name, 40)),
                escape(process.user),
                escape(cut(process.cmdline, 80)),
            )
        print_table(killed)
    for error in kill.errors:
        click.echo(f"not ended: {printable(error)}")


def _show_reboot(outcome: Outcome, now: float) -> None:
    reboot_result = outcome.info.result.reboot
    sessions = Table("USER", "TERMINAL", "FROM", "SINCE", title="logged in at the request")
    for user in reboot_result.sessions:
        sessions.add_row(
            escape(user.name),
            escape(user.terminal) or "-",
            escape(user.host) or "local",
            when(user.started_at, now),
        )
    print_table(sessions)
    if not reboot_result.sessions:
        click.echo("nobody was logged in")
    if reboot_result.back_at:
        restarted = reboot_result.boot_time_after != reboot_result.boot_time_before
        click.echo(
            f"back {when(reboot_result.back_at, now)}; "
            + ("the host rebooted" if restarted else "only the agent restarted")
        )


# How `rmm commands show` prints each kind of result in full (others: their one-line summary).
_RESULT_SHOWN: dict[str, Callable[[Outcome, float], None]] = {
    "script": _show_script,
    "processes": lambda outcome, _now: print_table(process_table(outcome)),
    "services": lambda outcome, _now: print_table(service_table(outcome)),
    "kill": _show_kill,
    "reboot": _show_reboot,
}


def _show_result(outcome: Outcome, now: float) -> None:
    result = outcome.info.result
    kind = result.WhichOneof("result")
    if kind is None:
        return
    show = _RESULT_SHOWN.get(kind)
    if show is not None:
        show(outcome, now)
    else:
        click.echo(printable(result_summary(result)))
