"""`rmm`: the operator's command line.

The root group and its global options (where the server is, how to trust it, who you are); every
command group lives in its own module and is listed once in GROUPS.

Groups are imported when they run, not when `rmm` starts: `rmm --help` and each command load
only what they use (grpc, rich and the protocol's messages cost ~250 ms of start-up together).
"""

from __future__ import annotations

import atexit
import gc
from pathlib import Path
from typing import Any

import click

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_common import __version__  # one version constant, no metadata read at start-up
from rmm_common.cliparams import checked, server_address

# At exit, the objects of every module a command imported (grpc's and the protocol's, ~28,000)
# are set aside before the collection Python makes while it exits, which would walk them all
# again for a process about to end: ~30 ms of CPU of every command that calls the server
# (issue #16). Only at exit: a process that imports this (a test) collects as before until then.
atexit.register(gc.freeze)


class LazyCommand(click.Command):
    """A command group's place on the root: its name and one-line help, its module loaded on use.

    The root asks load() for the real command before parsing its arguments; `rmm --help` lists
    the name and help kept here without importing the module (tests/rmm_cli/test_layout.py
    checks both against the real command).
    """

    def __init__(self, name: str, module: str, attribute: str, short_help: str) -> None:
        super().__init__(name, help=short_help)
        self.module = module
        self.attribute = attribute
        self._loaded: click.Command | None = None

    def load(self) -> click.Command:
        """Import the command's module and return the command it defines."""
        if self._loaded is None:
            # __import__ rather than importlib.import_module: `python -X importtime` lists
            # the group's module only when it comes through the import statement's path.
            command = getattr(__import__(self.module, fromlist=[self.attribute]), self.attribute)
            if not isinstance(command, click.Command) or command.name != self.name:
                raise RuntimeError(
                    f"rmm_cli.main GROUPS: {self.module}.{self.attribute} is not the command "
                    f"{self.name!r}: fix its line in GROUPS"
                )
            self._loaded = command
        return self._loaded

    def invoke(self, ctx: click.Context) -> Any:
        # Only reached if something bypasses RootGroup.get_command: run the real command then.
        return self.load().invoke(ctx)


class RootGroup(click.Group):
    """The root group: resolves a LazyCommand to its real command only when it is used."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        return command.load() if isinstance(command, LazyCommand) else command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own version calls get_command for every row, which would import every group.
        commands = [
            (name, command)
            for name in self.list_commands(ctx)
            if (command := self.commands.get(name)) is not None and not command.hidden
        ]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _fingerprint(value: str, _flag: str) -> str:
    # rmm_common.pinning imports ssl and socket: only when a fingerprint is given.
    if not value:
        return value
    from rmm_common.pinning import normalize_fingerprint  # noqa: PLC0415

    return normalize_fingerprint(value)


@click.group(cls=RootGroup)
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
    callback=checked(_fingerprint),
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


# Every command group (and the few top-level commands), each from its own module: its name, its
# module and attribute, and its one-line help as `rmm --help` lists it (the first line of its
# docstring; tests/rmm_cli/test_startup.py fails when they differ). A new group is one more
# LazyCommand line here, never an import of its module at the top of this file: that would load
# the module, and whatever it imports, for every `rmm` command.
GROUPS: list[click.Command] = [
    LazyCommand(
        "tokens",
        "rmm_cli.tokens",
        "tokens",
        "Enrollment tokens: how new agents join a client and site.",
    ),
    LazyCommand(
        "agents", "rmm_cli.agents", "agents", "Enrolled agents: their state and latest metrics."
    ),
    LazyCommand("alerts", "rmm_cli.alerts", "alerts", "Alerts raised by the policies."),
    LazyCommand(
        "silences", "rmm_cli.silences", "silences", "Silences: ad-hoc quiet for matching alerts."
    ),
    LazyCommand(
        "maintenance",
        "rmm_cli.maintenance",
        "maintenance",
        "Maintenance windows: scheduled quiet for a scope of agents.",
    ),
    LazyCommand(
        "notifications", "rmm_cli.notifications", "notifications", "Notification delivery."
    ),
    LazyCommand(
        "policy", "rmm_cli.policy", "policy", "Alert policies: validate, explain, reload, test."
    ),
    LazyCommand(
        "operators",
        "rmm_cli.operators",
        "operators",
        "Operators: who may use this server, with which role (admin only).",
    ),
    LazyCommand(
        "audit",
        "rmm_cli.audit",
        "audit",
        "The audit log: every change operators made, hash-chained so edits show.",
    ),
    LazyCommand(
        "run",
        "rmm_cli.run",
        "run_command",
        "Run a script on every agent TARGET selects; show each one's output and exit code.",
    ),
    LazyCommand(
        "scripts",
        "rmm_cli.scripts",
        "scripts",
        "The server's script library: what `rmm run --library NAME` can run.",
    ),
    LazyCommand(
        "processes", "rmm_cli.actions", "processes", "Processes on agents: list them, end them."
    ),
    LazyCommand(
        "services",
        "rmm_cli.actions",
        "services",
        "Services on agents: list, start, stop, restart.",
    ),
    LazyCommand(
        "reboot",
        "rmm_cli.actions",
        "reboot",
        "Reboot the agents TARGET selects; the result names who was logged in.",
    ),
    LazyCommand(
        "files",
        "rmm_cli.actions",
        "files",
        "Copy small files (up to 8 MiB) to and from agents.",
    ),
    LazyCommand(
        "commands",
        "rmm_cli.commands",
        "commands",
        "Remote actions sent before: list them, show one in full.",
    ),
    LazyCommand(
        "patches",
        "rmm_cli.patches",
        "patches",
        "Patches: the fleet's pending updates, approval, installs and compliance.",
    ),
    LazyCommand(
        "drivers",
        "rmm_cli.drivers",
        "drivers",
        "Drivers and firmware: the fleet's pending ones; push a package; roll it back.",
    ),
    LazyCommand(
        "clients",
        "rmm_cli.clients",
        "clients",
        "Clients: the MSP's customers, each with its sites and contract.",
    ),
    LazyCommand(
        "sites", "rmm_cli.sites", "sites", "Sites: a client's locations, each with its time zone."
    ),
    LazyCommand(
        "contracts",
        "rmm_cli.contracts",
        "contracts",
        "Contracts: each client's type, hours or rate, and SLA targets.",
    ),
    LazyCommand(
        "tickets",
        "rmm_cli.tickets",
        "tickets",
        "Tickets: work orders with tiers, SLA timers, notes and time.",
    ),
    LazyCommand(
        "reports",
        "rmm_cli.reports",
        "reports",
        "Reports: a client's month against its contract; the most frequent problems.",
    ),
]
for group in GROUPS:
    main.add_command(group)
