"""`rmm-server`: run the central server."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rmm_common import __version__  # one version constant, no metadata read at start-up
from rmm_common.cliparams import checked, database_url, duration_text, listen_address
from rmm_common.durations import parse_duration
from rmm_common.errors import ConfigError, RmmError
from rmm_common.logs import setup_logging
from rmm_common.net import PLAINTEXT_BEYOND_LOOPBACK_FLAG, check_plaintext
from rmm_server.budgets import parse_budget, parse_size
from rmm_server.ratelimit import (
    DEFAULT_ENROLL_RATE,
    DEFAULT_OPERATOR_RATE,
    DEFAULT_REPORT_RATE,
    Rate,
)
from rmm_server.shipped import SHIPPED_POLICIES, SHIPPED_SCRIPT_LIBRARY
from rmm_server.tls import show_ca

if TYPE_CHECKING:
    from rmm_server.app import ServerConfig

log = logging.getLogger("rmm_server")

# The server and the database layer are imported by the commands that use them: importing the
# server takes about 2 s of CPU, which `ca show` and `--help` should not pay.


def _shipped_policies() -> Path | None:
    return SHIPPED_POLICIES if SHIPPED_POLICIES.is_dir() else None


def _shipped_script_library() -> Path | None:
    return SHIPPED_SCRIPT_LIBRARY if SHIPPED_SCRIPT_LIBRARY.is_dir() else None


@click.group()
@click.version_option(__version__, package_name="msp-rmm")
def main() -> None:
    """Run the RMM server."""


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the embedded database and admin.token live (created if missing).",
)
@click.option(
    "--grpc-listen",
    default="0.0.0.0:50051",
    show_default=True,
    callback=checked(listen_address),
    help="HOST:PORT.",
)
@click.option(
    "--http-listen",
    default="0.0.0.0:9464",
    show_default=True,
    callback=checked(listen_address),
    help="HOST:PORT.",
)
@click.option("--insecure", is_flag=True, help="Serve gRPC in plaintext (loopback and tests).")
@click.option(
    PLAINTEXT_BEYOND_LOOPBACK_FLAG,
    "allow_plaintext",
    is_flag=True,
    help="With --insecure, listen in plaintext on an address beyond loopback too (a trusted "
    "network only: tokens and credentials cross it readable).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Your server certificate (PEM, may hold the chain) [default: our own, in DATA_DIR/tls].",
)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="Its key (PEM).")
@click.option(
    "--tls-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The CA that signed --tls-cert: its fingerprint is what agents pin.",
)
@click.option(
    "--tls-san",
    "tls_sans",
    multiple=True,
    help="Another name or IP address for our own certificate (repeatable); localhost, "
    "127.0.0.1, ::1 and this host's name are always in it.",
)
@click.option(
    "--require-client-certs",
    is_flag=True,
    help="Mutual TLS: agents get a client certificate at enrollment and must show it.",
)
@click.option(
    "--mtls-listen",
    callback=checked(listen_address),
    help="HOST:PORT where agents with client certificates call [default: gRPC port + 1].",
)
@click.option(
    "--db",
    "db_url",
    envvar="RMM_DB",
    callback=checked(database_url),
    help="Database URL: postgresql://USER[:PASSWORD]@HOST[:PORT]/NAME; default: SQLite inside "
    "--data-dir.",
)
@click.option(
    "--db-wait",
    default="2m",
    show_default=True,
    envvar="RMM_DB_WAIT",
    callback=checked(duration_text),
    help="How long to keep retrying a PostgreSQL database that is down at start.",
)
@click.option(
    "--retention",
    default="2d",
    show_default=True,
    callback=checked(duration_text),
    help="How long raw reports are kept (each agent's latest is always kept).",
)
@click.option(
    "--policies",
    "policies_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of alert policy YAML files [default: the shipped policies/].",
)
@click.option("--no-policies", is_flag=True, help="Run without alert policies.")
@click.option(
    "--script-library",
    "script_library_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of scripts operators run by name [default: the shipped script-library/].",
)
@click.option(
    "--notify-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Notification receivers, routes and tiers (YAML); without it nobody is notified.",
)
@click.option(
    "--psa-webhook",
    default="",
    metavar="URL",
    help="Post every ticket event to this URL as JSON, for a PSA system (docs/desk.md).",
)
@click.option(
    "--psa-webhook-secret-file",
    default="",
    metavar="PATH",
    envvar="RMM_PSA_WEBHOOK_SECRET_FILE",
    help="Sign every --psa-webhook post with the secret in this file (header X-RMM-Signature, "
    "HMAC-SHA256; docs/desk.md says how the PSA checks it).",
)
@click.option(
    "--msp-name",
    default="your IT provider",
    show_default=True,
    envvar="RMM_MSP_NAME",
    help="Who runs this server, as consent prompts on managed computers name it "
    '(e.g. "Acme IT"; docs/consent.md).',
)
@click.option(
    "--prometheus-url",
    default="",
    metavar="URL",
    help="The dashboard's agent charts ask this Prometheus (which scrapes our /metrics) instead "
    "of the server's own 24 h history, e.g. http://127.0.0.1:9090 (docs/dashboard.md).",
)
@click.option(
    "--offline-grace",
    default="2m",
    show_default=True,
    callback=checked(duration_text),
    help="After a start, wait this long before calling agents offline.",
)
@click.option(
    "--agent-updates",
    "agent_updates_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of rmm-agent-<version>.pyz archives offered to older self-updating agents.",
)
@click.option(
    "--enroll-rate",
    default=DEFAULT_ENROLL_RATE,
    show_default=True,
    help="Enrollments allowed per source address and per token: COUNT/UNIT[:BURST] "
    "(UNIT s, min or h), or off.",
)
@click.option(
    "--operator-rate",
    default=DEFAULT_OPERATOR_RATE,
    show_default=True,
    help="Calls allowed per operator: COUNT/UNIT[:BURST], or off.",
)
@click.option(
    "--report-rate",
    default=DEFAULT_REPORT_RATE,
    show_default=True,
    help="Reports read per agent before its stream is slowed (never refused), or off.",
)
@click.option(
    "--agent-byte-budget",
    default="64MiB/1h",
    show_default=True,
    help="Bytes one agent may have stored (report bodies and inventory, compressed) per "
    "window: SIZE/DURATION, or off. An agent over it is refused until the window ends.",
)
@click.option(
    "--min-free-space",
    default="1GiB",
    show_default=True,
    help="Free space kept on the data directory's filesystem: reports are refused (and wait "
    "in their agents' spools) below it. SIZE, or off.",
)
@click.option(
    "--replica-id",
    default=None,
    help="This replica's name among those sharing one PostgreSQL [default: hostname:gRPC port].",
)
@click.option(
    "--reuse-port",
    is_flag=True,
    help="Share --grpc-listen's port with other replicas on this host started with it too "
    "(SO_REUSEPORT: the kernel spreads agents' connections over them), so one host runs "
    "several ingest processes. Needs --db postgresql://..., and a --replica-id and "
    "--http-listen of its own for each.",
)
@click.option(
    "--audit-checkpoint-every",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Sign the audit head into DATA_DIR/audit-checkpoints.log after this many entries.",
)
@click.option(
    "--audit-checkpoint-interval",
    default="60s",
    show_default=True,
    help="...and at least this often while it moves (docs/audit.md).",
)
@click.option(
    "--site-time-zone",
    "site_time_zones",
    multiple=True,
    metavar="CLIENT/SITE=ZONE",
    help="The IANA time zone of a site, for patch schedules read in the site's time zone "
    "(time_zone: site); repeat per site [default: UTC].",
)
@click.option(
    "--offline-check-interval", default="15s", hidden=True, callback=checked(duration_text)
)
@click.option(
    "--escalation-check-interval", default="30s", hidden=True, callback=checked(duration_text)
)
@click.option("--log-level", default="info", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
def serve(
    data_dir: Path,
    grpc_listen: str,
    http_listen: str,
    insecure: bool,
    allow_plaintext: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    tls_sans: tuple[str, ...],
    require_client_certs: bool,
    mtls_listen: str | None,
    db_url: str | None,
    db_wait: str,
    retention: str,
    policies_dir: Path | None,
    no_policies: bool,
    script_library_dir: Path | None,
    notify_config: Path | None,
    psa_webhook: str,
    psa_webhook_secret_file: str,
    msp_name: str,
    prometheus_url: str,
    offline_grace: str,
    agent_updates_dir: Path | None,
    enroll_rate: str,
    operator_rate: str,
    report_rate: str,
    agent_byte_budget: str,
    min_free_space: str,
    replica_id: str | None,
    reuse_port: bool,
    audit_checkpoint_every: int,
    audit_checkpoint_interval: str,
    site_time_zones: tuple[str, ...],
    offline_check_interval: str,
    escalation_check_interval: str,
    log_level: str,
    log_format: str,
) -> None:
    """Serve agents (gRPC), operators (gRPC) and Prometheus (HTTP) until SIGTERM."""
    from rmm_server.app import ServerConfig  # noqa: PLC0415
    from rmm_server.patching.windows import parse_site_zones  # noqa: PLC0415
    from rmm_server.storage.migrate import wait_until_reachable  # noqa: PLC0415

    setup_logging(log_level, log_format)
    try:
        if insecure and check_plaintext(
            grpc_listen, "agents' credentials and reports and operators' tokens", allow_plaintext
        ):
            # Loud on purpose, and on stderr even with --log-format json: a plaintext listener
            # on the network must not look like an ordinary start.
            log.warning(
                "gRPC on %s in PLAINTEXT beyond loopback (%s): credentials, tokens, reports and "
                "commands cross the network readable and changeable; use TLS unless this network "
                "is trusted",
                grpc_listen,
                PLAINTEXT_BEYOND_LOOPBACK_FLAG,
            )
        byte_budget, budget_window = parse_budget(agent_byte_budget, "--agent-byte-budget")
        config = ServerConfig(
            data_dir=data_dir,
            grpc_listen=grpc_listen,
            http_listen=http_listen,
            insecure=insecure,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_ca=tls_ca,
            tls_sans=tls_sans,
            require_client_certs=require_client_certs,
            mtls_listen=mtls_listen,
            db_url=db_url,
            retention_seconds=parse_duration(retention),
            policies_dir=None if no_policies else (policies_dir or _shipped_policies()),
            notify_config=notify_config,
            psa_webhook=psa_webhook.strip(),
            psa_webhook_secret=_psa_secret(psa_webhook, psa_webhook_secret_file),
            msp_name=_msp_name(msp_name),
            prometheus_url=_prometheus_url(prometheus_url),
            offline_grace_seconds=parse_duration(offline_grace),
            offline_check_seconds=parse_duration(offline_check_interval),
            escalation_check_seconds=parse_duration(escalation_check_interval),
            agent_updates_dir=agent_updates_dir,
            enroll_rate=Rate.parse(enroll_rate, "--enroll-rate"),
            operator_rate=Rate.parse(operator_rate, "--operator-rate"),
            report_rate=Rate.parse(report_rate, "--report-rate"),
            script_library_dir=script_library_dir or _shipped_script_library(),
            agent_byte_budget=byte_budget,
            agent_budget_window_seconds=budget_window,
            min_free_space=parse_size(min_free_space, "--min-free-space"),
            replica_id=replica_id,
            reuse_port=reuse_port,
            audit_checkpoint_every=audit_checkpoint_every,
            audit_checkpoint_seconds=parse_duration(audit_checkpoint_interval),
            site_time_zones=parse_site_zones(site_time_zones),
        )
        if config.policies_dir is None and not no_policies:
            click.echo(
                f"rmm-server: the shipped policies are missing ({SHIPPED_POLICIES} is no "
                "directory; a broken install?): running without alert policies (pass "
                "--policies DIR, or reinstall)",
                err=True,
            )
        if config.script_library_dir is None:
            click.echo(
                f"rmm-server: the shipped script library is missing ({SHIPPED_SCRIPT_LIBRARY} is "
                "no directory; a broken install?): the library is empty (pass --script-library "
                "DIR, or reinstall)",
                err=True,
            )
        if db_url and not db_url.startswith("sqlite"):
            wait_until_reachable(db_url, parse_duration(db_wait))
        # Each report allocates thousands of objects: at CPython's default (700, 10, 10) young
        # collections ran several times a report and older ones walked the whole fleet's state;
        # these thresholds cut server CPU per report by 7-16 % (bench/README.md, ingest_rate).
        # What is loaded by now lives as long as the process: out of every collection's walk.
        gc.set_threshold(50_000, 20, 20)
        gc.freeze()
        asyncio.run(_serve(config))
    except RmmError as error:
        click.echo(f"rmm-server: {error}", err=True)
        sys.exit(2)


def _prometheus_url(url: str) -> str:
    # Checked here too, not only when the server builds its charts: a wrong URL stops the
    # server before it opens its database.
    from rmm_server.web.prometheus_charts import check_url  # noqa: PLC0415

    return check_url(url) if url.strip() else ""


def _psa_secret(url: str, path: str) -> bytes:
    if not path:
        return b""
    if not url.strip():
        raise ConfigError(
            "--psa-webhook-secret-file signs the posts of --psa-webhook: give the URL too, or "
            "drop the secret"
        )
    from rmm_server.desk.psa import read_secret  # noqa: PLC0415

    return read_secret(path)


def _msp_name(name: str) -> str:
    from rmm_common.text import invisible_problem  # noqa: PLC0415

    problem = invisible_problem("--msp-name", name)
    if problem is not None:
        raise ConfigError(problem)
    if not name.strip() or len(name) > 100:
        raise ConfigError(
            f"--msp-name {name[:120]!r}: give the name users know their IT provider by, "
            "1 to 100 characters"
        )
    return name.strip()


@main.command()
def shipped() -> None:
    """Print where the policies and scripts shipped with this installation are.

    Copy them from there to make your own (serve --policies DIR --script-library DIR).
    """
    missing = []
    for name, path in (("policies", SHIPPED_POLICIES), ("script-library", SHIPPED_SCRIPT_LIBRARY)):
        click.echo(f"{name}\t{path}")
        if not path.is_dir():
            missing.append(f"rmm-server: {path} is no directory: a broken install? reinstall")
    for line in missing:
        click.echo(line, err=True)
    if missing:
        sys.exit(1)


@main.group()
def ca() -> None:
    """The server's own CA: what agents and operators pin."""


@ca.command("show")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The server's data directory.",
)
def ca_show(data_dir: Path) -> None:
    """Print the CA certificate (PEM, on stdout) and its fingerprint (on stderr)."""
    try:
        pem, fingerprint = show_ca(data_dir)
    except RmmError as error:
        click.echo(f"rmm-server: {error}", err=True)
        sys.exit(2)
    click.echo(pem, nl=False)
    click.echo(f"fingerprint {fingerprint}", err=True)


@main.command()
@click.option(
    "--db",
    "db_url",
    envvar="RMM_DB",
    callback=checked(database_url),
    help="Database URL (postgresql://...); or give --data-dir for the embedded SQLite database.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The server's data directory, whose embedded SQLite database is migrated.",
)
@click.option("--to", "target", default="head", show_default=True, help="Revision to upgrade to.")
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing; exit 1 unless the schema is at this release's revision.",
)
@click.option(
    "--db-wait",
    default="0s",
    show_default=True,
    callback=checked(duration_text),
    help="How long to keep retrying a database that is down.",
)
def migrate(
    db_url: str | None, data_dir: Path | None, target: str, check: bool, db_wait: str
) -> None:
    """Upgrade the database schema to this release's (back the database up first)."""
    from rmm_server.storage.migrate import (  # noqa: PLC0415
        current_state,
        mask_url,
        upgrade,
        wait_until_reachable,
    )
    from rmm_server.storage.store import create_store_engine, sqlite_url  # noqa: PLC0415

    setup_logging("info")
    try:
        if db_url:
            url = db_url
        elif data_dir is not None:
            if not (data_dir / "rmm.sqlite3").is_file():
                raise ConfigError(
                    f"no database at {data_dir / 'rmm.sqlite3'}: is --data-dir the server's? "
                    "(`rmm-server serve` creates it)"
                )
            url = sqlite_url(data_dir)
        else:
            raise ConfigError("say which database: --db URL (or RMM_DB), or --data-dir DIR")
        if not url.startswith("sqlite"):
            wait_until_reachable(url, parse_duration(db_wait))
        engine = create_store_engine(url)
        try:
            if check:
                state = current_state(engine)
                click.echo(
                    f"{mask_url(url)}: schema at {state.label}, this release needs {state.head}"
                    + ("" if state.at_head else ": run `rmm-server migrate` on it")
                )
                sys.exit(0 if state.at_head else 1)
            before, after = upgrade(engine, target)
        finally:
            engine.dispose()
    except RmmError as error:
        click.echo(f"rmm-server: {error}", err=True)
        sys.exit(2)
    if before.current == after.current:
        click.echo(f"{mask_url(url)}: schema at {after.label} already")
    else:
        click.echo(f"{mask_url(url)}: schema migrated from {before.label} to {after.label}")


@main.group()
def audit() -> None:
    """The audit log, checked from the data directory (no server needed)."""


@audit.command("verify")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    required=True,
    help="The server's data directory: its signing key and audit-checkpoints*.log.",
)
@click.option(
    "--db",
    "db_url",
    envvar="RMM_DB",
    callback=checked(database_url),
    help="The server's PostgreSQL URL; default: the SQLite database inside --data-dir.",
)
@click.option(
    "--checkpoints",
    "checkpoint_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Checkpoint lines kept elsewhere (a copy of the file, journald or syslog lines).",
)
def audit_verify(data_dir: Path, db_url: str | None, checkpoint_files: tuple[Path, ...]) -> None:
    """Check the audit chain and that it matches every signed checkpoint; exit 1 if not."""
    from rmm_server.audit_offline import report, verify_offline  # noqa: PLC0415

    try:
        result, key = verify_offline(data_dir, db_url, checkpoint_files)
    except RmmError as error:
        click.echo(f"rmm-server: {error}", err=True)
        sys.exit(2)
    lines, problems = report(result, key)
    for line in lines:
        click.echo(line)
    for problem in problems:
        click.echo(f"BROKEN: {problem}")
    sys.exit(1 if problems else 0)


@main.command("patch-runs")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    required=True,
    help="The server's data directory (its SQLite database, unless --db is given).",
)
@click.option(
    "--db",
    "db_url",
    envvar="RMM_DB",
    callback=checked(database_url),
    help="The server's PostgreSQL URL; default: the SQLite database inside --data-dir.",
)
@click.option("--window", default="", help="Only this window's runs (policy/schedule@zone).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--output", type=click.Choice(["table", "json"]), default="table")
def patch_runs(data_dir: Path, db_url: str | None, window: str, limit: int, output: str) -> None:
    """Patch windows opened, newest first: their rings, and the agents that missed them,
    failed or were held (read from the database; nothing is written)."""
    import json  # noqa: PLC0415
    import time  # noqa: PLC0415

    from rmm_server.patching.scheduling import describe_runs  # noqa: PLC0415
    from rmm_server.storage import Store  # noqa: PLC0415
    from rmm_server.storage.patch_runs import PatchRunStore  # noqa: PLC0415
    from rmm_server.storage.store import create_store_engine, sqlite_url  # noqa: PLC0415

    if db_url is None and not (data_dir / "rmm.sqlite3").is_file():
        click.echo(
            f"rmm-server: no database at {data_dir / 'rmm.sqlite3'}: give the server's --db URL "
            "when it uses PostgreSQL",
            err=True,
        )
        sys.exit(2)
    engine = create_store_engine(db_url or sqlite_url(data_dir))
    try:
        runs = describe_runs(PatchRunStore(Store(engine)).recent(window, limit))
    except RmmError as error:
        click.echo(f"rmm-server: {error}", err=True)
        sys.exit(2)
    finally:
        engine.dispose()
    if output == "json":
        click.echo(json.dumps(runs, indent=2))
        return
    for run in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(run["starts_at"]))
        counts = ", ".join(f"{n} {step}" for step, n in run["agents"].items())
        click.echo(f"{run['window']}  {when}Z  {run['state']}  {counts or 'no agents'}")
        for ring in run["rings"]:
            held = f" ({ring['held']})" if ring["held"] else ""
            click.echo(f"  ring {ring['name']}: {ring['state']}{held}")
        for step in ("missed", "failed", "held"):
            if run[step]:
                click.echo(f"  {step}: {', '.join(run[step])}")


async def _serve(config: ServerConfig) -> None:
    from rmm_server.app import RmmServer  # noqa: PLC0415

    server = RmmServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_in_background)
    try:
        await server.start()
        if server.admin_token_path is not None:
            click.echo(f"admin operator token written to {server.admin_token_path}", err=True)
        await stop.wait()
    finally:
        await server.stop()
