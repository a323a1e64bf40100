"""`rmm`: the operator's command line.

The root group and its global options (where the server is, how to trust it, who you are); every
command group lives in its own module and is listed once in GROUPS.
"""

from __future__ import annotations

from pathlib import Path

import click

from rmm_cli import (
    actions,
    agents,
    alerts,
    audit,
    commands,
    maintenance,
    notifications,
    operators,
    policy,
    run,
    scripts,
    silences,
    tokens,
)
from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_common import __version__  # one version constant, no metadata read at start-up
from rmm_common.cliparams import checked, server_address
from rmm_common.pinning import normalize_fingerprint


@click.group()
@click.option(
    "--server",
    envvar="RMM_SERVER",
    default="",
    callback=checked(server_address),
    help="Server HOST:PORT [RMM_SERVER].",
)
@click.option("--token", envvar="RMM_TOKEN", default="", help="Operator token [RMM_TOKEN].")
@click.option(
    "--insecure",
    envvar="RMM_INSECURE",
    is_flag=True,
    help="Plaintext gRPC (loopback and tests) [RMM_INSECURE=1].",
)
@click.option(
    "--allow-plaintext-beyond-loopback",
    "allow_plaintext",
    envvar="RMM_ALLOW_PLAINTEXT_BEYOND_LOOPBACK",
    is_flag=True,
    help="With --insecure, talk plaintext to a server beyond loopback too (a trusted network "
    "only: your token crosses it readable) [RMM_ALLOW_PLAINTEXT_BEYOND_LOOPBACK=1].",
)
@click.option(
    "--ca-cert",
    envvar="RMM_CA_CERT",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="CA certificate that signed the server's [RMM_CA_CERT].",
)
@click.option(
    "--ca-fingerprint",
    envvar="RMM_CA_FINGERPRINT",
    default="",
    callback=checked(lambda value, _flag: normalize_fingerprint(value)),
    help="sha256:<hex> of the server's CA, to trust it without a file [RMM_CA_FINGERPRINT].",
)
@click.version_option(__version__, package_name="msp-rmm")
@click.pass_context
def main(
    ctx: click.Context,
    server: str,
    token: str,
    insecure: bool,
    allow_plaintext: bool,
    ca_cert: Path | None,
    ca_fingerprint: str,
) -> None:
    """Operate the RMM: enrollment tokens, agents, and more."""
    if sum(bool(x) for x in (insecure, ca_cert, ca_fingerprint)) > 1:
        raise CliError(
            "--insecure, --ca-cert and --ca-fingerprint exclude each other: pick one", EXIT_USAGE
        )
    connection = Connection(
        server=server,
        token=token.strip(),
        insecure=insecure,
        ca_cert=ca_cert,
        ca_fingerprint=ca_fingerprint.strip(),
        allow_plaintext=allow_plaintext,
    )
    ctx.obj = connection
    ctx.call_on_close(connection.close)


# Every command group (and the few top-level commands), each from its own module.
GROUPS: list[click.Command] = [
    tokens.tokens,
    agents.agents,
    alerts.alerts,
    silences.silences,
    maintenance.maintenance,
    notifications.notifications,
    policy.policy,
    operators.operators,
    audit.audit,
    run.run_command,
    scripts.scripts,
    actions.processes,
    actions.services,
    actions.reboot,
    actions.files,
    commands.commands,
]
for group in GROUPS:
    main.add_command(group)
