"""`rmm-server`: run the central server."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import click

from rmm_common.durations import parse_duration
from rmm_common.errors import RmmError
from rmm_common.logs import setup_logging
from rmm_server.app import SHIPPED_POLICIES, RmmServer, ServerConfig


def _shipped_policies() -> Path | None:
    return SHIPPED_POLICIES if SHIPPED_POLICIES.is_dir() else None


@click.group()
@click.version_option(package_name="rmm")
def main() -> None:
    """Run the RMM server."""


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the embedded database and admin.token live (created if missing).",
)
@click.option("--grpc-listen", default="0.0.0.0:50051", show_default=True, help="HOST:PORT.")
@click.option("--http-listen", default="0.0.0.0:9464", show_default=True, help="HOST:PORT.")
@click.option("--insecure", is_flag=True, help="Serve gRPC in plaintext (loopback and tests).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--db",
    "db_url",
    envvar="RMM_DB",
    help="Database URL; default: SQLite inside --data-dir.",
)
@click.option(
    "--retention",
    default="2d",
    show_default=True,
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
    "--notify-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Notification receivers, routes and tiers (YAML); without it nobody is notified.",
)
@click.option(
    "--offline-grace",
    default="2m",
    show_default=True,
    help="After a start, wait this long before calling agents offline.",
)
@click.option(
    "--agent-updates",
    "agent_updates_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of rmm-agent-<version>.pyz archives offered to older self-updating agents.",
)
@click.option("--offline-check-interval", default="15s", hidden=True)
@click.option("--escalation-check-interval", default="30s", hidden=True)
@click.option("--log-level", default="info", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
def serve(
    data_dir: Path,
    grpc_listen: str,
    http_listen: str,
    insecure: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    db_url: str | None,
    retention: str,
    policies_dir: Path | None,
    no_policies: bool,
    notify_config: Path | None,
    offline_grace: str,
    agent_updates_dir: Path | None,
    offline_check_interval: str,
    escalation_check_interval: str,
    log_level: str,
    log_format: str,
) -> None:
    """Serve agents (gRPC), operators (gRPC) and Prometheus (HTTP) until SIGTERM."""
    setup_logging(log_level, log_format)
    try:
        config = ServerConfig(
            data_dir=data_dir,
            grpc_listen=grpc_listen,
            http_listen=http_listen,
            insecure=insecure,
            tls_cert=tls_cert,
            tls_key=tls_key,
            db_url=db_url,
            retention_seconds=parse_duration(retention),
            policies_dir=None if no_policies else (policies_dir or _shipped_policies()),
            notify_config=notify_config,
            offline_grace_seconds=parse_duration(offline_grace),
            offline_check_seconds=parse_duration(offline_check_interval),
            escalation_check_seconds=parse_duration(escalation_check_interval),
            agent_updates_dir=agent_updates_dir,
        )
        if config.policies_dir is None and not no_policies:
            click.echo(
                "rmm-server: no policies/ beside this installation: running without alert "
                "policies (pass --policies DIR)",
                err=True,
            )
        asyncio.run(_serve(config))
    except RmmError as error:
        click.echo(f"rmm-server: {error}", err=True)
        sys.exit(2)


async def _serve(config: ServerConfig) -> None:
    server = RmmServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(
        signal.SIGHUP, lambda: loop.create_task(server.reload_policies(), name="reload")
    )
    try:
        await server.start()
        if server.admin_token_path is not None:
            click.echo(f"admin operator token written to {server.admin_token_path}", err=True)
        await stop.wait()
    finally:
        await server.stop()
