"""`rmm operators`: who may operate the server."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from rmm_cli.client import Connection
from rmm_cli.output import OUTPUT_OPTION, emit, emit_json, print_table, shown, when
from rmm_proto import operator_pb2


@click.group()
def operators() -> None:
    """Operators: who may use this server, with which role (admin only)."""


def operator_row(info: operator_pb2.OperatorInfo) -> dict[str, Any]:
    """Return an operator as JSON-ready data."""
    return {
        "id": info.id,
        "name": info.name,
        "role": info.role,
        "state": "revoked" if info.revoked_at else "active",
        "created_at": info.created_at,
        "created_by": info.created_by,
        "revoked_at": info.revoked_at or None,
    }


@operators.command("add")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    help="viewer, tier1, tier2, tier3 or admin; each may do everything the ones before may.",
)
@OUTPUT_OPTION
@click.pass_obj
def operators_add(conn: Connection, name: str, role: str, output: str) -> None:
    """Add an operator; its token is printed once (the server keeps only its hash)."""
    response = conn.call(
        conn.stub().AddOperator, operator_pb2.AddOperatorRequest(name=name, role=role)
    )
    if output == "json":
        emit_json({**operator_row(response.operator), "token": response.token})
        return
    click.echo(response.token)
    click.echo(
        f"operator {response.operator.name} ({response.operator.role}) added; the token above "
        "is not shown again: hand it over safely (it goes in RMM_TOKEN)",
        err=True,
    )


@operators.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked operators.")
@OUTPUT_OPTION
@click.pass_obj
def operators_list(conn: Connection, include_revoked: bool, output: str) -> None:
    """List operators and their roles (never their tokens)."""
    response = conn.call(
        conn.stub().ListOperators,
        operator_pb2.ListOperatorsRequest(include_revoked=include_revoked),
    )
    if output == "json":
        emit_json([operator_row(info) for info in response.operators])
        return
    table = Table("NAME", "ROLE", "STATE", "CREATED", "BY", "ID")
    for info in response.operators:
        table.add_row(
            shown(info.name),
            info.role,
            f"revoked {when(info.revoked_at)}" if info.revoked_at else "active",
            when(info.created_at),
            shown(info.created_by or "-"),
            info.id,
        )
    print_table(table)


@operators.command("revoke")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_obj
def operators_revoke(conn: Connection, name: str, output: str) -> None:
    """Revoke an operator (name or id): its token stops working at once."""
    info = conn.call(conn.stub().RevokeOperator, operator_pb2.RevokeOperatorRequest(name=name))
    emit(output, operator_row(info), f"operator {info.name} ({info.role}) revoked")
