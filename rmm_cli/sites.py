"""`rmm sites`: a client's sites, each with its time zone (docs/desk.md)."""

from __future__ import annotations

from typing import Any

import click

from rmm_cli.client import Connection
from rmm_cli.output import OUTPUT_OPTION, emit, emit_json, print_plain_table, when
from rmm_proto import operator_pb2


@click.group()
def sites() -> None:
    """Sites: a client's locations, each with its time zone."""


def site_row(site: operator_pb2.SiteInfo) -> dict[str, Any]:
    """Return a site as JSON-ready data."""
    return {
        "id": site.id,
        "client": site.client,
        "name": site.name,
        "time_zone": site.time_zone,
        "agents": site.agents,
        "created_at": site.created_at,
        "created_by": site.created_by,
        "updated_at": site.updated_at,
    }


def _line(site: operator_pb2.SiteInfo) -> str:
    return f"site {site.client}/{site.name} ({site.time_zone}): {site.agents} agent(s)"


@sites.command("create")
@click.argument("client")
@click.argument("name")
@click.option("--time-zone", default="UTC", show_default=True, help="IANA time zone name.")
@OUTPUT_OPTION
@click.pass_obj
def sites_create(conn: Connection, client: str, name: str, time_zone: str, output: str) -> None:
    """Add a site to CLIENT (tier3)."""
    site = conn.call(
        conn.stub().CreateSite,
        operator_pb2.CreateSiteRequest(client=client, name=name, time_zone=time_zone),
    )
    emit(output, site_row(site), f"created {_line(site)}")


@sites.command("list")
@click.option("--client", default="", help="Only this client's sites.")
@OUTPUT_OPTION
@click.pass_obj
def sites_list(conn: Connection, client: str, output: str) -> None:
    """List sites with their time zones and counts of agents."""
    response = conn.call(conn.stub().ListSites, operator_pb2.ListSitesRequest(client=client))
    if output == "json":
        emit_json([site_row(s) for s in response.sites])
        return
    print_plain_table(
        ("CLIENT", "SITE", "TIME ZONE", "AGENTS", "CREATED"),
        [
            (s.client, s.name, s.time_zone, str(s.agents), when(s.created_at))
            for s in response.sites
        ],
    )


@sites.command("show")
@click.argument("client")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_obj
def sites_show(conn: Connection, client: str, name: str, output: str) -> None:
    """Show one site of CLIENT."""
    site = conn.call(conn.stub().GetSite, operator_pb2.GetSiteRequest(client=client, name=name))
    emit(output, site_row(site), _line(site))


@sites.command("update")
@click.argument("client")
@click.argument("name")
@click.option("--name", "new_name", default="", help="The site's new name.")
@click.option("--time-zone", default="", help="The site's new IANA time zone.")
@OUTPUT_OPTION
@click.pass_obj
def sites_update(
    conn: Connection, client: str, name: str, new_name: str, time_zone: str, output: str
) -> None:
    """Rename a site of CLIENT (on its agents and tokens too) or set its time zone (tier3)."""
    site = conn.call(
        conn.stub().UpdateSite,
        operator_pb2.UpdateSiteRequest(
            client=client, name=name, new_name=new_name, time_zone=time_zone
        ),
    )
    emit(output, site_row(site), f"updated {_line(site)}")
