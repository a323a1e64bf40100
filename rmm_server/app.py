"""Wiring: one server process made of storage, fleet, ingest, gRPC, HTTP and the scheduler."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rmm_common.errors import ConfigError, StorageError
from rmm_proto import agent_pb2, agent_pb2_grpc, operator_pb2_grpc
from rmm_server.alerts.service import AlertService, EscalationPolicy
from rmm_server.enrollment import Enrollment
from rmm_server.exporter import MetricsRenderer
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.agent_service import AgentServicer
from rmm_server.grpc_api.guard import ServiceGuard
from rmm_server.grpc_api.operator_service import OperatorServicer
from rmm_server.http_api import HttpApi
from rmm_server.ingest import ReportIngestor
from rmm_server.notify import Dispatcher, Notification, NotifyError, load_notify_config
from rmm_server.operators import Operators
from rmm_server.reports import decompress
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import Store, open_store
from rmm_server.storage.store import sqlite_url
from rmm_server.storage.suppressions import NotificationFailure
from rmm_server.updates import UpdateIndex

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# The policies shipped beside the code (a source checkout or an editable install).
SHIPPED_POLICIES = Path(__file__).resolve().parent.parent / "policies"


@dataclass(slots=True)
class ServerConfig:
    data_dir: Path
    grpc_listen: str = "0.0.0.0:50051"
    http_listen: str = "0.0.0.0:9464"
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    db_url: str | None = None
    retention_seconds: float = 2 * 86400
    shutdown_grace_seconds: float = 5.0
    policies_dir: Path | None = None
    notify_config: Path | None = None
    offline_grace_seconds: float = 120.0
    offline_check_seconds: float = 15.0
    escalation_check_seconds: float = 30.0
    agent_updates_dir: Path | None = None


def split_host_port(value: str, option: str) -> tuple[str, int]:
    """Split HOST:PORT, or raise ConfigError naming the option."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{option} {value!r} is not HOST:PORT (e.g. 127.0.0.1:50051)")
    return host.strip("[]"), int(port)


class RmmServer:
    """The server process's parts, started and stopped in order."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = ServerMetrics()
        self.fleet = Fleet()
        self.store: Store | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.http: HttpApi | None = None
        self.ingestor: ReportIngestor | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.grpc_port = 0
        self.http_port = 0
        self.admin_token_path: Path | None = None
        self.alerts: AlertService | None = None
        self.dispatcher: Dispatcher | None = None
        self.updates: UpdateIndex | None = None

    def _server_credentials(self) -> grpc.ServerCredentials | None:
        if self.config.insecure:
            return None
        if not (self.config.tls_cert and self.config.tls_key):
            raise ConfigError(
                "TLS is the default and no certificate was given: pass --tls-cert FILE and "
                "--tls-key FILE, or --insecure to serve plaintext (loopback and tests only)"
            )
        try:
            cert = self.config.tls_cert.read_bytes()
            key = self.config.tls_key.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the TLS certificate or key: {exc}") from exc
        return grpc.ssl_server_credentials([(key, cert)])

    async def start(self) -> None:
        """Open storage, load the fleet and start listening."""
        config = self.config
        grpc_host, grpc_port = split_host_port(config.grpc_listen, "--grpc-listen")
        http_host, http_port = split_host_port(config.http_listen, "--http-listen")
        credentials = self._server_credentials()
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {config.data_dir}: {exc}") from exc
        url = config.db_url or sqlite_url(config.data_dir)
        self.store = store = await asyncio.to_thread(open_store, url)
        operators = Operators(store)
        self.admin_token_path = await asyncio.to_thread(operators.bootstrap_admin, config.data_dir)
        await asyncio.to_thread(self._load_fleet, store)
        self.alerts = alerts = AlertService(
            store,
            self.metrics.registry,
            config.policies_dir,
            offline_grace_seconds=config.offline_grace_seconds,
        )
        await asyncio.to_thread(alerts.load)
        if config.notify_config is not None:
            notify_config = load_notify_config(config.notify_config)
            self.dispatcher = Dispatcher(
                notify_config,
                on_failure=self._notification_failed,
                metrics_registry=self.metrics.registry,
            )
            await self.dispatcher.start()
            alerts.submit = self.dispatcher.submit
            alerts.escalation = EscalationPolicy(notify_config.ack_timeout, notify_config.next_tier)

        if config.agent_updates_dir is not None:
            self.updates = UpdateIndex(config.agent_updates_dir)
            await asyncio.to_thread(self.updates.scan)
        self.ingestor = ReportIngestor(
            store,
            self.fleet,
            self.metrics,
            after_store=alerts.on_report,
            offer_update=self.updates.offer_for if self.updates is not None else None,
        )
        self.ingestor.start()
        enrollment = Enrollment(store, self.fleet)
        server = grpc.aio.server(
            interceptors=[ServiceGuard(self.fleet, operators, self.metrics)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
            ],
        )
        agent_pb2_grpc.add_AgentServiceServicer_to_server(
            AgentServicer(enrollment, self.ingestor, self.metrics, self.updates), server
        )
        operator_pb2_grpc.add_OperatorServiceServicer_to_server(
            OperatorServicer(store, enrollment, alerts), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        address = f"[{grpc_host}]:{grpc_port}" if ":" in grpc_host else f"{grpc_host}:{grpc_port}"
        try:
            if credentials is None:
                self.grpc_port = server.add_insecure_port(address)
            else:
                self.grpc_port = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen on {config.grpc_listen} for gRPC: {exc}") from exc
        await server.start()
        self.grpc_server = server
        for service in ("rmm.v1.AgentService", "rmm.v1.OperatorService", ""):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

        renderer = MetricsRenderer(self.fleet, self.metrics.registry)
        try:
            self.http = HttpApi(http_host, http_port, renderer.render, self._healthy)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {config.http_listen} for HTTP: {exc}") from exc
        self.http.start()
        self.http_port = self.http.port

        self.scheduler = AsyncIOScheduler()
        self.scheduler.add_job(
            self._prune_reports, "interval", minutes=15, id="prune-reports", coalesce=True
        )
        self.scheduler.add_job(
            self._check_offline,
            "interval",
            seconds=config.offline_check_seconds,
            id="offline-check",
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.add_job(
            alerts.escalate_overdue,
            "interval",
            seconds=config.escalation_check_seconds,
            id="escalation",
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.start()
        log.info(
            "serving gRPC on %s:%d (%s), HTTP /metrics on %s:%d, %d agents, data in %s",
            grpc_host,
            self.grpc_port,
            "plaintext" if credentials is None else "TLS",
            http_host,
            self.http_port,
            len(self.fleet),
            config.data_dir,
        )

    def _load_fleet(self, store: Store) -> None:
        latest = dict(store.latest_report_bodies())
        for record in store.all_agents():
            body = latest.get(record.id)
            report = agent_pb2.Report.FromString(decompress(body)) if body else None
            self.fleet.add(record, report)

    async def _check_offline(self) -> None:
        if self.alerts is not None:
            await self.alerts.check_offline([state.record for state in self.fleet.snapshot()])

    async def _notification_failed(
        self, receiver: str, notification: Notification, error: NotifyError
    ) -> None:
        if self.alerts is None:
            return
        notifier = ""
        if self.dispatcher is not None:
            settings = self.dispatcher.config.receivers.get(receiver)
            notifier = settings.notifier if settings is not None else ""
        failure = NotificationFailure(
            at=time.time(),
            receiver=receiver,
            notifier=notifier,
            error=str(error),
            status=notification.status,
            group_key=notification.group_key,
            alert_ids=tuple(alert.alert_id for alert in notification.alerts),
        )
        try:
            await asyncio.to_thread(self.alerts.record_failure, failure)
        except StorageError as exc:
            log.error("cannot record a failed notification to %s: %s", receiver, exc)

    async def reload_policies(self) -> None:
        """Reload the policy directory and re-index agent archives (SIGHUP).

        A broken policy set or archive directory is refused and logged; the old one stays.
        """
        if self.alerts is not None:
            await asyncio.to_thread(self.alerts.reload_policies)
        if self.updates is not None:
            try:
                await asyncio.to_thread(self.updates.scan)
            except ConfigError as exc:
                log.error("%s; the previous agent archives stay offered", exc)

    def _healthy(self) -> tuple[bool, str]:
        if self.grpc_server is None:
            return False, "starting\n"
        return True, f"ok: {len(self.fleet)} agents\n"

    async def _prune_reports(self) -> None:
        if self.store is None:
            return
        cutoff = time.time() - self.config.retention_seconds
        try:
            removed = await asyncio.to_thread(self.store.prune_reports, cutoff)
        except StorageError as exc:
            log.error("pruning old reports failed, will retry: %s", exc)
            return
        if removed:
            log.info("pruned %d reports older than the retention limit", removed)

    async def wait(self) -> None:
        """Wait until the gRPC server stops."""
        if self.grpc_server is not None:
            await self.grpc_server.wait_for_termination()

    async def stop(self) -> None:
        """Stop accepting, finish what is in flight, write what is queued, close."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.grpc_server is not None:
            await self.grpc_server.stop(self.config.shutdown_grace_seconds)
        if self.ingestor is not None:
            await self.ingestor.stop()
        if self.alerts is not None:
            await self.alerts.flush()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.http is not None:
            self.http.stop()
        if self.store is not None:
            self.store.close()
        log.info("server stopped")
