"""`rmm clients`: the MSP's clients as records (docs/desk.md)."""

from __future__ import annotations

from typing import Any

import click

from rmm_cli.client import Connection
from rmm_cli.output import OUTPUT_OPTION, emit, emit_json, print_plain_table, when
from rmm_proto import operator_pb2


@click.group()
def clients() -> None:
    """Clients: the MSP's customers, each with its sites and contract."""


def client_row(client: operator_pb2.ClientInfo) -> dict[str, Any]:
    """Return a client as JSON-ready data."""
    return {
        "id": client.id,
        "name": client.name,
        "sites": client.sites,
        "agents": client.agents,
        "has_contract": client.has_contract,
        "created_at": client.created_at,
        "created_by": client.created_by,
        "updated_at": client.updated_at,
    }


def _line(client: operator_pb2.ClientInfo) -> str:
    contract = "a contract" if client.has_contract else "no contract"
    return (
        f"client {client.name}: {client.sites} site(s), {client.agents} agent(s), {contract} "
        f"(created {when(client.created_at)} by {client.created_by})"
    )


@clients.command("create")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_obj
def clients_create(conn: Connection, name: str, output: str) -> None:
    """Add a client (tier3)."""
    client = conn.call(conn.stub().CreateClient, operator_pb2.CreateClientRequest(name=name))
    emit(output, client_row(client), f"created {_line(client)}")


@clients.command("list")
@OUTPUT_OPTION
@click.pass_obj
def clients_list(conn: Connection, output: str) -> None:
    """List clients with their counts of sites and agents."""
    response = conn.call(conn.stub().ListClients, operator_pb2.ListClientsRequest())
    if output == "json":
        emit_json([client_row(c) for c in response.clients])
        return
    print_plain_table(
        ("NAME", "SITES", "AGENTS", "CONTRACT", "CREATED"),
        [
            (
                c.name,
                str(c.sites),
                str(c.agents),
                "yes" if c.has_contract else "no",
                when(c.created_at),
            )
            for c in response.clients
        ],
    )


@clients.command("show")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_obj
def clients_show(conn: Connection, name: str, output: str) -> None:
    """Show one client."""
    client = conn.call(conn.stub().GetClient, operator_pb2.GetClientRequest(name=name))
    emit(output, client_row(client), _line(client))


@clients.command("update")
@click.argument("name")
@click.option("--name", "new_name", required=True, help="The client's new name.")
@OUTPUT_OPTION
@click.pass_obj
def clients_update(conn: Connection, name: str, new_name: str, output: str) -> None:
    """Rename a client, on its agents and enrollment tokens too (tier3).

    Policy files, silences and maintenance windows that name the old name are not changed:
    update them too.
    """
    client = conn.call(
        conn.stub().UpdateClient, operator_pb2.UpdateClientRequest(name=name, new_name=new_name)
    )
    emit(output, client_row(client), f"renamed {name} to {_line(client)}")
