"""`rmm silences`: ad-hoc quiet for matching alerts."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from rmm_cli.client import Connection
from rmm_cli.output import OUTPUT_OPTION, emit, emit_json, print_table, shown, when
from rmm_proto import operator_pb2


@click.group()
def silences() -> None:
    """Silences: ad-hoc quiet for matching alerts."""


def silence_row(silence: operator_pb2.SilenceInfo) -> dict[str, Any]:
    """Return a silence as JSON-ready data."""
    return {
        "id": silence.id,
        "matchers": silence.matchers,
        "state": silence.state,
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "created_by": silence.created_by,
        "comment": silence.comment,
    }


@silences.command("list")
@click.option("--all", "include_expired", is_flag=True, help="Include expired silences.")
@OUTPUT_OPTION
@click.pass_obj
def silences_list(conn: Connection, include_expired: bool, output: str) -> None:
    """List silences."""
    response = conn.call(
        conn.stub().ListSilences,
        operator_pb2.ListSilencesRequest(include_expired=include_expired),
    )
    if output == "json":
        emit_json([silence_row(s) for s in response.silences])
        return
    table = Table("ID", "STATE", "MATCHERS", "ENDS", "BY", "COMMENT")
    for s in response.silences:
        table.add_row(
            s.id, s.state, shown(s.matchers), when(s.ends_at), shown(s.created_by), shown(s.comment)
        )
    print_table(table)


@silences.command("expire")
@click.argument("silence_id")
@OUTPUT_OPTION
@click.pass_obj
def silences_expire(conn: Connection, silence_id: str, output: str) -> None:
    """End a silence now."""
    silence = conn.call(conn.stub().ExpireSilence, operator_pb2.ExpireSilenceRequest(id=silence_id))
    emit(output, silence_row(silence), f"silence {silence.id} expired")
