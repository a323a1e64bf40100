"""`rmm-agent`: enroll this host, run the agent, or collect once."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
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
from rmm_agent.errorlog import RecentErrors
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
    # What a user's `rmm-agent help` attaches as this agent's recent errors.
    logging.getLogger().addHandler(RecentErrors(state_dir))
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


USER_STATE_DIR_OPTION = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The agent's state directory (default: $RMM_AGENT_STATE_DIR, else /var/lib/rmm-agent).",
)
PROMPT_TIMEOUT_SECONDS = 600


def ask_description() -> str:
    """Ask for the problem in a desktop dialog, or fail saying to give it as an argument."""
    # Imported here: what only `help` and `verify` need stays out of the running agent.
    from rmm_agent.help import prompt_command  # noqa: PLC0415

    argv = prompt_command(os.environ, shutil.which, sys.platform, os.geteuid())
    if argv is None:
        fail(
            'give the problem as an argument: rmm-agent help "the printer is offline" (there is '
            "no desktop session with zenity or kdialog here to ask in)",
            EXIT_USAGE,
        )
        raise AssertionError  # fail() exits
    try:
        answer = subprocess.run(
            argv, capture_output=True, text=True, timeout=PROMPT_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        fail(f"cannot ask in a dialog ({exc}): give the problem as an argument", EXIT_USAGE)
        raise AssertionError from exc
    if answer.returncode != 0:
        fail("the dialog was closed without a description: nothing was sent")
    return answer.stdout.strip()


def help_snapshot(state_dir: Path, config: AgentConfig) -> bytes:
    """Collect a report now and make the help request's snapshot of it (JSON)."""
    from rmm_agent.help import (  # noqa: PLC0415
        make_snapshot,
        read_failed_commands,
        read_logged_errors,
        read_spool,
    )
    from rmm_common.helpdesk import MAX_SNAPSHOT_BYTES  # noqa: PLC0415

    builder = ReportBuilder(
        make_collectors(config.disabled_collectors),
        timeout_seconds=config.collector_timeout_seconds,
        wait_for_slow=True,
    )
    report = builder.build()
    builder.close()
    spool, problems = read_spool(state_dir)
    failed = read_failed_commands(state_dir, time.time()) + read_logged_errors(
        state_dir, time.time()
    )
    snapshot = make_snapshot(report_to_dict(report), spool, failed, problems)
    encoded = json.dumps(snapshot).encode()
    if len(encoded) > MAX_SNAPSHOT_BYTES:  # the summary always fits; the raw figures may not
        snapshot.pop("report")
        encoded = json.dumps(snapshot).encode()
    return encoded


def user_identity(state_dir: Path | None) -> tuple[Path, Identity]:
    """Return the state directory a user's command means and its identity, or fail."""
    from rmm_agent.help import check_readable, default_state_dir  # noqa: PLC0415

    path = state_dir if state_dir is not None else default_state_dir(os.environ)
    try:
        check_readable(path)
        return path, StateDir(path).load_identity()
    except RmmError as exc:
        fail(str(exc), EXIT_USAGE)
        raise AssertionError from exc


@main.command("help")
@click.argument("text", required=False)
@USER_STATE_DIR_OPTION
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Agent configuration file (YAML): the collectors it turns off stay off.",
)
@click.option("--output", type=click.Choice(["table", "json"]), default="table")
def help_request(
    text: str | None, state_dir: Path | None, config_path: Path | None, output: str
) -> None:
    """Ask your support desk for help: opens a ticket with this computer's state attached."""
    from rmm_agent.help import HelpError, local_user, request_help  # noqa: PLC0415
    from rmm_common.helpdesk import help_text_problem  # noqa: PLC0415

    if text is None:
        text = ask_description()
    problem = help_text_problem(text)
    if problem is not None:
        fail(problem, EXIT_USAGE)
    path, identity = user_identity(state_dir)
    try:
        config = read_config(config_path)
    except RmmError as exc:
        fail(str(exc), EXIT_USAGE)
    setup_logging("error")
    snapshot = help_snapshot(path, config)
    try:
        ticket = request_help(identity, path, text.strip(), snapshot, local_user(os.environ))
    except HelpError as exc:
        fail(f"help request not sent: {exc}")
    data = {
        "ticket": ticket.ticket_id,
        "verify_code": ticket.verify_code,
        "tier": ticket.tier,
        "client": ticket.client,
    }
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"Your support desk has your request: ticket {ticket.ticket_id} (at {ticket.tier}), "
        "with this computer's state attached.\n"
        f"Verification code: {ticket.verify_code}\n"
        "Whoever calls you about it can tell you this code. To check a caller's code: "
        "rmm-agent verify CODE"
    )


@main.command()
@click.argument("code")
@USER_STATE_DIR_OPTION
@click.option("--output", type=click.Choice(["table", "json"]), default="table")
def verify(code: str, state_dir: Path | None, output: str) -> None:
    """Check whether a caller's code belongs to an open ticket of this computer (exit 0: it
    does, 1: it does not)."""
    from rmm_agent.help import HelpError, verify_code  # noqa: PLC0415
    from rmm_common.helpdesk import HELP_OPENED_BY, code_problem, normalize_code  # noqa: PLC0415

    problem = code_problem(code)
    if problem is not None:
        fail(problem, EXIT_USAGE)
    path, identity = user_identity(state_dir)
    try:
        answer = verify_code(identity, path, normalize_code(code))
    except HelpError as exc:
        fail(f"the code was not checked: {exc}")
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "match": answer.match,
                    "ticket": answer.ticket_id or None,
                    "tier": answer.tier,
                    "assignee": answer.assignee,
                    "status": answer.status,
                    "title": answer.title,
                    "opened_by": answer.opened_by,
                    "opened_at": answer.opened_at or None,
                    "opened_here": answer.opened_by == HELP_OPENED_BY,
                },
                indent=2,
            )
        )
    elif answer.match:
        who = f"assigned to {answer.assignee}" if answer.assignee else "not yet assigned"
        click.echo(
            f"YES: {normalize_code(code)} is the code of ticket {answer.ticket_id} of this "
            f"computer's support desk ({answer.tier}, {answer.status}, {who}): {answer.title}"
        )
        if answer.opened_by == HELP_OPENED_BY:
            opened = time.strftime("%Y-%m-%d %H:%M", time.localtime(answer.opened_at))
            # Whoever controls this computer remotely can ask for help on it and read the code
            # out: such a code proves a ticket exists, not who is calling.
            click.echo(
                f"Note: this ticket was opened from this computer (rmm-agent help) at {opened}. "
                "If you did not ask for help then, someone else did, maybe the caller: hang up "
                "and call your support desk at the number you already know."
            )
    else:
        click.echo(
            f"NO: {normalize_code(code)} is not the code of any open ticket of this computer. "
            "Whoever gave it to you is not working on a ticket for it: do not let them onto this "
            "computer; call your support desk at the number you already know."
        )
    sys.exit(0 if answer.match else EXIT_FAILURE)


main.add_command(exiting(install_service, ServiceError, EXIT_FAILURE))
main.add_command(exiting(uninstall_service, ServiceError, EXIT_FAILURE))
main.add_command(exiting(launch, RmmError, EXIT_USAGE))
