"""`rmm tokens`: enrollment tokens, how new agents join a client and site."""

from __future__ import annotations

import dataclasses
from typing import Any

import click
from rich.table import Table

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import OUTPUT_OPTION, emit, emit_json, print_table, shown, when
from rmm_common.durations import parse_duration
from rmm_common.errors import InvalidArgument
from rmm_common.oneliner import (
    DEFAULT_PACKAGE,
    INSTALLER_PLATFORMS,
    Enrollment,
    ca_fingerprint,
    installer_command,
)
from rmm_proto import operator_pb2


@click.group()
def tokens() -> None:
    """Enrollment tokens: how new agents join a client and site."""


def token_row(token: operator_pb2.EnrollmentToken) -> dict[str, Any]:
    """Return a token as JSON-ready data."""
    return {
        "id": token.id,
        "client": token.client,
        "site": token.site,
        "state": token.state,
        "uses": token.uses,
        "max_uses": token.max_uses or None,
        "created_at": token.created_at,
        "created_by": token.created_by,
        "expires_at": token.expires_at or None,
        "revoked_at": token.revoked_at or None,
    }


@tokens.command("create")
@click.option("--client", required=True, help="The client new agents belong to.")
@click.option("--site", required=True, help="The client's site new agents belong to.")
@click.option("--expires", help="Lifetime, e.g. 7d or 12h (default: never).")
@click.option("--uses", type=click.IntRange(min=1), help="How many agents may enroll with it.")
@click.option(
    "--installer",
    type=click.Choice(INSTALLER_PLATFORMS),
    help="Also print a one-line command that installs, enrolls and starts an agent there.",
)
@click.option(
    "--package-url",
    default=DEFAULT_PACKAGE,
    show_default=True,
    help="What the installer gives pip: a requirement, a wheel URL or an index's package.",
)
@OUTPUT_OPTION
@click.pass_obj
def tokens_create(
    conn: Connection,
    client: str,
    site: str,
    expires: str | None,
    uses: int | None,
    installer: str | None,
    package_url: str,
    output: str,
) -> None:
    """Create an enrollment token; its secret is shown once."""
    try:
        expires_in = parse_duration(expires) if expires else 0.0
    except InvalidArgument as exc:
        raise CliError(f"--expires: {exc}", EXIT_USAGE) from None
    try:  # check what the installer needs before a token is spent on it
        enrollment = Enrollment(
            server=conn.server,
            token="unset",
            package=package_url,
            ca_pem=conn.ca_cert.read_text() if conn.ca_cert and installer else "",
            insecure=conn.insecure,
            allow_plaintext=conn.allow_plaintext,
        )
        if installer is not None:
            enrollment.check()
    except (InvalidArgument, OSError) as exc:
        raise CliError(f"--installer: {exc}", EXIT_USAGE) from None
    response = conn.call(
        conn.stub().CreateEnrollmentToken,
        operator_pb2.CreateEnrollmentTokenRequest(
            client=client, site=site, expires_in_seconds=expires_in, max_uses=uses or 0
        ),
    )
    command = None
    if installer is not None:
        enrollment = dataclasses.replace(
            enrollment, token=response.secret, ca_fingerprint=response.ca_fingerprint
        )
        command = installer_command(enrollment, installer)
    if output == "json":
        extra = {"installer": command} if command is not None else {}
        emit_json(
            {
                **token_row(response.token),
                "token": response.secret,
                "ca_fingerprint": response.ca_fingerprint or None,
                **extra,
            }
        )
        return
    click.echo(response.secret)
    if command is not None:
        where = "PowerShell as Administrator" if installer == "windows" else "a root shell"
        click.echo(f"# run this in {where} on the new {installer} host:", err=True)
        click.echo(command)
        if enrollment.ca_fingerprint:
            click.echo(f"# it pins the server's CA, {enrollment.ca_fingerprint}", err=True)
        elif enrollment.ca_pem:
            fingerprint = ca_fingerprint(enrollment.ca_pem)
            click.echo(f"# it pins the server's CA, SHA-256 {fingerprint}", err=True)
    if response.ca_fingerprint:
        click.echo(
            f"server CA {response.ca_fingerprint}: enroll with "
            f"`rmm-agent enroll --ca-fingerprint {response.ca_fingerprint} ...`",
            err=True,
        )
    detail = [f"token {response.token.id} for {client}/{site}"]
    if response.token.expires_at:
        detail.append(f"expires {when(response.token.expires_at)}")
    if response.token.max_uses:
        detail.append(f"{response.token.max_uses} uses")
    click.echo("; ".join(detail) + " (the secret above is not shown again)", err=True)


@tokens.command("list")
@click.option("--all", "include_inactive", is_flag=True, help="Include expired, used and revoked.")
@OUTPUT_OPTION
@click.pass_obj
def tokens_list(conn: Connection, include_inactive: bool, output: str) -> None:
    """List enrollment tokens (never their secrets)."""
    response = conn.call(
        conn.stub().ListEnrollmentTokens,
        operator_pb2.ListEnrollmentTokensRequest(include_inactive=include_inactive),
    )
    if output == "json":
        emit_json([token_row(token) for token in response.tokens])
        return
    table = Table("ID", "CLIENT", "SITE", "STATE", "USES", "EXPIRES", "CREATED", "BY")
    for token in response.tokens:
        table.add_row(
            token.id,
            shown(token.client),
            shown(token.site),
            token.state,
            f"{token.uses}/{token.max_uses}" if token.max_uses else str(token.uses),
            when(token.expires_at) if token.expires_at else "never",
            when(token.created_at),
            shown(token.created_by),
        )
    print_table(table)


@tokens.command("revoke")
@click.argument("token_id")
@OUTPUT_OPTION
@click.pass_obj
def tokens_revoke(conn: Connection, token_id: str, output: str) -> None:
    """Revoke an enrollment token so nobody enrolls with it any more."""
    token = conn.call(
        conn.stub().RevokeEnrollmentToken,
        operator_pb2.RevokeEnrollmentTokenRequest(id=token_id),
    )
    emit(output, token_row(token), f"token {token.id} ({token.client}/{token.site}) revoked")
