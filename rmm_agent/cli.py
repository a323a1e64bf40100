"""`rmm-agent`: enroll this host, run the agent, or collect once."""

from __future__ import annotations

import functools
import json
import logging
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import grpc

from rmm_agent import __version__
from rmm_agent.collectors import COLLECTORS, Collector
from rmm_agent.commands.channel import CommandChannel
from rmm_agent.commands.history import HISTORY_FILE, CommandHistory
from rmm_agent.config import AgentConfig, load_config
from rmm_agent.report import ReportBuilder, report_to_dict
from rmm_agent.runner import AgentRunner
from rmm_agent.service.base import ServiceError
from rmm_agent.service.install import install_service, uninstall_service
from rmm_agent.state import Identity, StateDir
from rmm_agent.transport import (
    StreamLink,
    agent_channel,
    describe_rpc_error,
    make_client_key,
    open_channel,
)
from rmm_agent.update.command import attach_updater, launch
from rmm_common.cliparams import checked, server_address
from rmm_common.errors import ConfigError, RmmError
from rmm_common.logs import setup_logging
from rmm_common.net import PLAINTEXT_BEYOND_LOOPBACK_FLAG, check_plaintext
from rmm_common.pinning import describe_connect_failure, fetch_pinned_ca, normalize_fingerprint
from rmm_proto import agent_pb2, agent_pb2_grpc

log = logging.getLogger("rmm_agent")
EXIT_FAILURE = 1
EXIT_USAGE = 2

STATE_DIR_OPTION = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the agent keeps its identity and counters.",
)


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    """Print an error for a person and exit with `code`."""
    click.echo(f"rmm-agent: {message}", err=True)
    sys.exit(code)


def exiting(command: click.Command, error: type[RmmError], code: int) -> click.Command:
    """Make `command` exit `code` with a message on `error`, and with any status it returns.

    Commands defined beside their library code raise and return; only this entry point exits.
    """
    callback = command.callback
    assert callback is not None

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            status = callback(*args, **kwargs)
        except error as exc:
            fail(str(exc), code)
        else:
            if isinstance(status, int):
                sys.exit(status)

    command.callback = run
    return command


def warn_plaintext(server: str) -> None:
    """Say loudly, on stderr, that this agent talks plaintext beyond loopback."""
    click.echo(
        f"rmm-agent: WARNING: talking PLAINTEXT gRPC to {server} beyond loopback "
        f"({PLAINTEXT_BEYOND_LOOPBACK_FLAG}): the credential, reports and commands cross the "
        "network readable and changeable; enroll again over TLS unless this network is trusted",
        err=True,
    )


def make_collectors(disabled: list[str]) -> list[Collector]:
    """Instantiate every registered collector not disabled; one that cannot start is skipped."""
    collectors: list[Collector] = []
    for cls in COLLECTORS:
        if cls.name in disabled:
            continue
        try:
            collectors.append(cls())
        except Exception as exc:  # a collector that cannot start is logged, the rest run
            log.warning("collector %s cannot start and is disabled: %s", cls.name, exc)
    return collectors


def read_config(path: Path | None) -> AgentConfig:
    """Return the configuration from `path`, or the defaults."""
    if path is None:
        return AgentConfig()
    return load_config(path, {cls.name for cls in COLLECTORS})


@click.group()
@click.version_option(__version__, package_name="msp-rmm")
def main() -> None:
    """The RMM agent for this host."""


@main.command()
@click.option(
    "--server",
    required=True,
    callback=checked(server_address),
    help="The server's gRPC address, HOST:PORT.",
)
@click.option("--token", required=True, envvar="RMM_ENROLL_TOKEN", help="An enrollment token.")
@STATE_DIR_OPTION
@click.option("--tag", "tags", multiple=True, help="A tag for this host (repeatable).")
@click.option("--insecure", is_flag=True, help="Talk plaintext gRPC (loopback and tests only).")
@click.option(
    PLAINTEXT_BEYOND_LOOPBACK_FLAG,
    "allow_plaintext",
    is_flag=True,
    help="With --insecure, talk plaintext to a server beyond loopback too (a trusted network "
    "only: the token and this agent's credential cross it readable).",
)
@click.option(
    "--ca-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM file of the CA that signed the server's certificate (default: system CAs).",
)
@click.option(
    "--ca-fingerprint",
    callback=checked(lambda value, _flag: normalize_fingerprint(value)),
    help="sha256:<hex> of the server's CA (rmm tokens create prints it): trust that CA only.",
)
@click.option("--force", is_flag=True, help="Enroll again even if this state dir has an identity.")
def enroll(
    server: str,
    token: str,
    state_dir: Path,
    tags: tuple[str, ...],
    insecure: bool,
    allow_plaintext: bool,
    ca_cert: Path | None,
    ca_fingerprint: str | None,
    force: bool,
) -> None:
    """Enroll this host with a server, once."""
    state = StateDir(state_dir)
    if state.has_identity() and not force:
        fail(
            f"{state.identity_path} exists: this agent is enrolled already (--force to redo)",
            EXIT_USAGE,
        )
    if sum(bool(x) for x in (insecure, ca_cert, ca_fingerprint)) > 1:
        fail("--insecure, --ca-cert and --ca-fingerprint exclude each other: pick one", EXIT_USAGE)
    if insecure:
        try:
            if check_plaintext(
                server, "the enrollment token and this agent's credential", allow_plaintext
            ):
                warn_plaintext(server)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
    ca_pem = ""
    if ca_cert is not None:
        try:
            ca_pem = ca_cert.read_text()
        except OSError as exc:
            fail(f"cannot read --ca-cert {ca_cert}: {exc.strerror}", EXIT_USAGE)
    if ca_fingerprint:
        try:
            normalize_fingerprint(ca_fingerprint)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
        try:
            ca_pem = fetch_pinned_ca(server, ca_fingerprint)
        except ConfigError as exc:
            fail(f"enrollment refused: {exc}")
    # Over TLS the agent asks for a client certificate for a key that never leaves this host;
    # a server that does not require them ignores the request.
    client_key, csr = (b"", "") if insecure else make_client_key()
    collectors = make_collectors([])
    builder = ReportBuilder([c for c in collectors if c.name == "system"])
    host = builder.build().host
    builder.close()
    channel = open_channel(server, insecure, ca_pem)
    try:
        response = agent_pb2_grpc.AgentServiceStub(channel).Enroll(
            agent_pb2.EnrollRequest(
                token=token, host=host, tags=list(tags), agent_version=__version__, csr_pem=csr
            ),
            timeout=30,
        )
    except grpc.RpcError as error:
        code = (
            EXIT_USAGE
            if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT)
            else EXIT_FAILURE
        )
        advice = describe_connect_failure(
            error.details() or "",
            code=error.code().name,
            insecure=insecure,
            trusted=(
                f"the CA in --ca-cert {ca_cert}"
                if ca_cert
                else f"the pinned CA {ca_fingerprint}"
                if ca_fingerprint
                else ""
            ),
            pin_flag="--ca-fingerprint sha256:<hex>",
        )
        if advice is not None:
            fail(f"enrollment failed: the server at {server}: {advice}", code)
        fail(f"enrollment failed: {describe_rpc_error(error, server, pinned=bool(ca_pem))}", code)
    finally:
        channel.close()
    try:
        if response.client_certificate_pem:
            state.save_client_key(client_key)
        state.save_identity(
            Identity(
                agent_id=response.agent_id,
                credential=response.credential,
                server=server,
                client=response.client,
                site=response.site,
                tags=sorted(set(tags)),
                insecure=insecure,
                ca_cert_pem=ca_pem,
                enrolled_at=time.time(),
                command_public_key=response.command_public_key.hex(),
                client_cert_pem=response.client_certificate_pem,
                mtls_port=response.mtls_port,
            )
        )
    except ConfigError as exc:
        fail(str(exc))
    click.echo(
        f"enrolled as agent {response.agent_id} for {response.client}/{response.site}; "
        f"identity in {state.identity_path}"
    )


@main.command()
@STATE_DIR_OPTION
@click.option("--interval", type=float, help="Seconds between reports (default 30).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Agent configuration file (YAML).",
)
@click.option("--log-level", help="debug, info, warning or error (default: info).")
@click.option("--log-format", type=click.Choice(["text", "json"]))
def run(
    state_dir: Path,
    interval: float | None,
    config_path: Path | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Report to the server every interval until SIGTERM."""
    try:
        config = read_config(config_path)
        identity = StateDir(state_dir).load_identity()
    except RmmError as exc:
        fail(str(exc), EXIT_USAGE)
    setup_logging(log_level or config.log_level, log_format or config.log_format)
    if interval is not None:
        if interval < 1:
            fail("--interval must be at least 1 second", EXIT_USAGE)
        config.interval_seconds = interval
    if identity.insecure:
        try:
            beyond = check_plaintext(identity.server, "this agent's credential", allowed=True)
        except ConfigError:
            beyond = True  # a malformed address is the channel's to report; warn anyway
        if beyond:
            # Allowed at enrollment with the explicit flag; still loud at every start.
            warn_plaintext(identity.server)
    agent = assemble_agent(identity, state_dir, config)
    runner = agent.runner

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "agent %s reporting to %s every %gs",
        identity.agent_id,
        identity.server,
        config.interval_seconds,
    )
    code = runner.run()
    agent.close()
    sys.exit(code)


@dataclass
class AssembledAgent:
    """An agent's parts, as `rmm-agent run` and the Windows service run them."""

    runner: AgentRunner
    channel: grpc.Channel
    commands: CommandChannel | None
    link: StreamLink | None = None

    def close(self) -> None:
        """Stop the command stream and close the connection (after runner.run() returned)."""
        if self.commands is not None:
            self.commands.stop()
        if self.link is not None:
            self.link.close()
        self.channel.close()


def assemble_agent(identity: Identity, state_dir: Path, config: AgentConfig) -> AssembledAgent:
    """Build the report loop, the updater and the command stream of an enrolled agent."""
    builder = ReportBuilder(
        make_collectors(config.disabled_collectors),
        timeout_seconds=config.collector_timeout_seconds,
        inventory_interval_seconds=config.inventory_interval_seconds,
    )
    channel = agent_channel(identity, state_dir)
    # The streams go over the channel's grpc.aio twin on one event loop (nothing polls while
    # idle); the synchronous channel serves an update's download only, connecting when one starts.
    link = StreamLink.for_channel(channel)
    runner = AgentRunner(
        identity,
        StateDir(state_dir),
        builder,
        channel,
        config.interval_seconds,
        spool_max_reports=config.spool_max_reports,
        spool_max_bytes=config.spool_max_bytes,
        link=link,
    )
    attach_updater(runner)
    commands = start_commands(identity, state_dir, channel, config, runner, link)
    return AssembledAgent(runner, channel, commands, link)


def start_commands(
    identity: Identity,
    state_dir: Path,
    channel: grpc.Channel,
    config: AgentConfig,
    runner: AgentRunner,
    link: StreamLink | None = None,
) -> CommandChannel | None:
    """Open the command stream, unless this agent never pinned a server key."""
    if not identity.command_public_key:
        log.warning(
            "this agent enrolled without the server's command key, so it accepts no remote "
            "actions; enroll it again (rmm-agent enroll --force) to receive them"
        )
        return None
    try:
        commands = CommandChannel(
            identity, state_dir, channel, config, runner.collect_now, runner.stop_event, link=link
        )
    except (OSError, ValueError, sqlite3.Error) as exc:
        log.error(
            "remote actions are off: cannot open the command history in %s: %s", state_dir, exc
        )
        return None
    commands.start()
    return commands


@main.command()
@STATE_DIR_OPTION
@click.option("--limit", type=click.IntRange(min=1), default=50, help="How many, newest last.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table")
def history(state_dir: Path, limit: int, output: str) -> None:
    """Show the remote commands this agent was sent: who, what, when and the outcome."""
    path = state_dir / HISTORY_FILE
    if not path.exists():
        fail(f"{path} does not exist: this agent has received no commands yet", EXIT_FAILURE)
    try:
        store = CommandHistory(path)
        entries = store.entries(limit)
        store.close()
    except (OSError, sqlite3.Error) as exc:
        fail(f"cannot read the command history {path}: {exc}")
    if output == "json":
        click.echo(json.dumps([entry.as_dict() for entry in entries], indent=2))
        return
    for entry in entries:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.at))
        outcome = entry.status
        if entry.exit_code is not None:
            outcome += f" (exit {entry.exit_code})"
        if entry.error:
            outcome += f": {entry.error}"
        what = entry.summary or entry.command_id
        click.echo(f"{stamp}  {entry.operator or '?':<20} {what}  -> {outcome}")


@main.command()
@click.option("--once", is_flag=True, required=True, help="Collect one report and print it.")
@click.option("--output", type=click.Choice(["json", "table"]), default="json", show_default=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Agent configuration file (YAML).",
)
def collect(once: bool, output: str, config_path: Path | None) -> None:
    """Collect one full report without any server and print it."""
    del once  # the only mode; the flag keeps the command explicit for scripts
    try:
        config = read_config(config_path)
    except RmmError as exc:
        fail(str(exc), EXIT_USAGE)
    setup_logging("warning")
    builder = ReportBuilder(
        make_collectors(config.disabled_collectors),
        timeout_seconds=config.collector_timeout_seconds,
        wait_for_slow=True,
    )
    report = builder.build()
    builder.attach_inventory(report)
    builder.close()
    data = report_to_dict(report, builder.inventory_json)
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    for collector in data["collectors"]:
        status = "ok" if collector["ok"] else f"FAILED: {collector['error']}"
        click.echo(
            f"{collector['name']:<12} {status} ({collector['duration_seconds'] * 1000:.1f} ms)"
        )
        for sample in collector["samples"]:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample["labels"].items()))
            click.echo(f"    {sample['name']}{{{labels}}} {sample['value']:g}")


main.add_command(exiting(install_service, ServiceError, EXIT_FAILURE))
main.add_command(exiting(uninstall_service, ServiceError, EXIT_FAILURE))
main.add_command(exiting(launch, RmmError, EXIT_USAGE))
