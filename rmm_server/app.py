"""Wiring: one server process made of storage, fleet, ingest, gRPC, HTTP and the scheduler."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy import text

from rmm_common.errors import ConfigError, StorageError
from rmm_common.net import split_host_port
from rmm_proto import agent_pb2, agent_pb2_grpc, operator_pb2_grpc
from rmm_server import tls
from rmm_server.agent_credentials import AgentCredentials
from rmm_server.alerts.service import AlertService, EscalationPolicy
from rmm_server.audit import AuditLog
from rmm_server.audit_checkpoints import CheckpointLog, checkpoint_file_name
from rmm_server.background import BackgroundTasks
from rmm_server.budgets import (
    DEFAULT_AGENT_BYTE_BUDGET,
    DEFAULT_BUDGET_WINDOW_SECONDS,
    DEFAULT_MIN_FREE_SPACE,
    AgentByteBudget,
    FreeSpaceReserve,
)
from rmm_server.cluster import Cluster, PgCluster, default_replica_id
from rmm_server.commands import CommandService
from rmm_server.desk.alert_tickets import AlertTickets
from rmm_server.desk.availability import OfflineRecorder
from rmm_server.desk.help import HelpDesk, open_alerts_of
from rmm_server.desk.notices import tell_tiers
from rmm_server.desk.psa import PsaWebhook
from rmm_server.desk.tickets import Tickets
from rmm_server.enrollment import Enrollment
from rmm_server.exporter import MetricsRenderer
from rmm_server.exposition import ExportBudget
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.agent_service import AgentServicer
from rmm_server.grpc_api.guard import ServiceGuard
from rmm_server.grpc_api.operator_service import OperatorServicer
from rmm_server.health import StorageWatch
from rmm_server.http_api import HttpApi
from rmm_server.ingest import ReportIngestor
from rmm_server.listeners import (
    DescriptorBudget,
    describe_bind_error,
    grpc_listener_options,
    join_host_port,
    why_bind_failed,
)
from rmm_server.notify import Dispatcher, Notification, NotifyError, load_notify_config
from rmm_server.notify.reload import NotifyReloader
from rmm_server.operators import Operators
from rmm_server.patching.inventory import PatchInventory, settings_from
from rmm_server.patching.metrics import PatchMetrics
from rmm_server.patching.operations import PatchOperations
from rmm_server.patching.scheduling import PatchWindows, build_patch_windows
from rmm_server.ratelimit import ENROLL_RATE, OPERATOR_RATE, REPORT_RATE, Rate, RateLimits
from rmm_server.remediation import Remediator
from rmm_server.reports import decompress
from rmm_server.runs import RunService
from rmm_server.scripts import ScriptLibrary
from rmm_server.server_metrics import ServerMetrics
from rmm_server.signing import CommandSigner
from rmm_server.storage import Store, open_store
from rmm_server.storage.agent_history import AgentHistoryStore
from rmm_server.storage.audit import AuditStore
from rmm_server.storage.replicas import agents_seen_since
from rmm_server.storage.store import sqlite_url
from rmm_server.storage.suppressions import NotificationFailure
from rmm_server.storage.tickets import TicketEvent, TicketRecord
from rmm_server.tls import ClientCerts, ServerTls
from rmm_server.updates import UpdateIndex
from rmm_server.web import Dashboard, DashboardDeps
from rmm_server.web.history import ChartHistory
from rmm_server.web.prometheus_charts import PrometheusCharts
from rmm_server.web.tls_context import http_ssl_context

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class ServerConfig:
    data_dir: Path
    grpc_listen: str = "0.0.0.0:50051"
    http_listen: str = "0.0.0.0:9464"
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_sans: tuple[str, ...] = ()
    require_client_certs: bool = False
    mtls_listen: str | None = None  # default: the gRPC host, its port + 1
    db_url: str | None = None
    retention_seconds: float = 2 * 86400
    shutdown_grace_seconds: float = 5.0
    policies_dir: Path | None = None
    notify_config: Path | None = None
    offline_grace_seconds: float = 120.0
    offline_check_seconds: float = 15.0
    escalation_check_seconds: float = 30.0
    psa_webhook: str = ""  # URL every ticket event is posted to (docs/desk.md); "": none
    psa_webhook_secret: bytes = b""  # signs every post (X-RMM-Signature); b"": unsigned
    msp_name: str = "your IT provider"  # who runs this server, named in consent prompts
    prometheus_url: str = ""  # the dashboard's charts ask this Prometheus; "": own history
    agent_updates_dir: Path | None = None
    script_library_dir: Path | None = None
    # Token buckets (None: no limit): enrollments per source address and per token, operator
    # calls per operator, reports per agent (slowed down, never refused).
    enroll_rate: Rate | None = ENROLL_RATE
    operator_rate: Rate | None = OPERATOR_RATE
    report_rate: Rate | None = REPORT_RATE
    # Bytes one agent may have stored per window (0: no budget), and the free space the
    # embedded database never uses (0: no reserve). See rmm_server/budgets.py.
    agent_byte_budget: int = DEFAULT_AGENT_BYTE_BUDGET
    agent_budget_window_seconds: float = DEFAULT_BUDGET_WINDOW_SECONDS
    min_free_space: int = DEFAULT_MIN_FREE_SPACE
    # This process among replicas sharing one PostgreSQL (default hostname:gRPC port).
    replica_id: str | None = None
    # Share the gRPC port with other replicas on this host (SO_REUSEPORT): several processes
    # take one host's agents, the kernel spreading their connections (docs/scaling.md).
    reuse_port: bool = False
    # Signed audit checkpoints (docs/audit.md): after this many entries, and at least this
    # often while the head moves.
    audit_checkpoint_every: int = 100
    audit_checkpoint_seconds: float = 60.0
    # Patch windows (docs/patching.md): how often open runs advance, and the IANA time zone of
    # each "client/site" whose schedules say time_zone: site (UTC where none is given).
    patch_tick_seconds: float = 10.0
    site_time_zones: dict[str, str] = field(default_factory=dict)


def _check_reuse_port(config: ServerConfig, dialect: str, default_id: str) -> None:
    """Raise ConfigError when --reuse-port is asked and cannot work: replicas sharing the port
    need PostgreSQL and a name each."""
    if not config.reuse_port:
        return
    if dialect != "postgresql":
        raise ConfigError(
            "--reuse-port lets several replicas share the gRPC port, and replicas need "
            "PostgreSQL (--db postgresql://...): an SQLite file has one server process. "
            "Leave --reuse-port out, or give --db"
        )
    if not config.replica_id:
        raise ConfigError(
            "--reuse-port: give each replica sharing the port its own --replica-id (the "
            f"default, {default_id}, would be the same for all of them)"
        )


class RmmServer:
    """The server process's parts, started and stopped in order."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = ServerMetrics()
        self.fleet = Fleet(ExportBudget(counter=self.metrics.exporter_series_dropped))
        self.store: Store | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.agent_servicer: AgentServicer | None = None
        self.http: HttpApi | None = None
        self.dashboard: Dashboard | None = None
        self.chart_history: ChartHistory | None = None
        self.storage_watch: StorageWatch | None = None
        self.health_servicer: health.aio.HealthServicer | None = None
        self.ingestor: ReportIngestor | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.grpc_port = 0
        self.http_port = 0
        self.admin_token_path: Path | None = None
        self.alerts: AlertService | None = None
        self._offline: OfflineRecorder | None = None
        self.dispatcher: Dispatcher | None = None
        self.notify_reloader: NotifyReloader | None = None  # with --notify-config only
        self.updates: UpdateIndex | None = None
        # One object for the server's lifetime: reloads swap its contents, so the servicer's
        # reference stays current.
        self.scripts = ScriptLibrary()
        self.commands: CommandService | None = None
        self.audit: AuditLog | None = None
        self.psa: PsaWebhook | None = None
        self.tls: ServerTls | None = None
        self.credentials: AgentCredentials | None = None
        self.patch_inventory: PatchInventory | None = None
        self.cluster: Cluster = Cluster("local")
        self.patch_windows: PatchWindows | None = None
        self._synced_until = 0.0
        self._background = BackgroundTasks()

    def _tls(self) -> ServerTls | None:
        """Return what the gRPC port serves: none (plaintext), the operator's or our own TLS."""
        config = self.config
        if config.insecure:
            if config.tls_cert or config.tls_key or config.tls_ca or config.require_client_certs:
                raise ConfigError(
                    "--insecure serves plaintext: drop it, or drop --tls-cert, --tls-key, "
                    "--tls-ca and --require-client-certs"
                )
            return None
        if bool(config.tls_cert) != bool(config.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together: pass both, or neither")
        if config.tls_cert and config.tls_key:
            return tls.from_files(
                config.tls_cert,
                config.tls_key,
                config.tls_ca,
                config.data_dir,
                mutual=config.require_client_certs,
            )
        if config.tls_ca:
            raise ConfigError("--tls-ca goes with --tls-cert and --tls-key (the operator's own)")
        return tls.load_or_create(config.data_dir, config.tls_sans)

    async def _start_notifications(self, path: Path, alerts: AlertService) -> None:
        """Load --notify-config and route the alerts' notifications and escalations through it."""
        notify_config = load_notify_config(path)
        self.dispatcher = Dispatcher(
            notify_config,
            on_failure=self._notification_failed,
            metrics_registry=self.metrics.registry,
            on_sent=self._notification_sent,
        )
        await self.dispatcher.start()
        alerts.submit = self.dispatcher.submit
        alerts.escalation = EscalationPolicy(notify_config.ack_timeout, notify_config.next_tier)
        self.notify_reloader = NotifyReloader(
            path,
            self.dispatcher,
            self.metrics.registry,
            on_loaded=lambda new: setattr(
                alerts, "escalation", EscalationPolicy(new.ack_timeout, new.next_tier)
            ),
        )

    def _share_alerts(self, cluster: Cluster, alerts: AlertService) -> None:
        """Tell the other replicas of alert and silence changes; only the leader shows firing."""
        alerts.saved = lambda ids: cluster.publish("alert", "c", ids)
        alerts.suppressions_changed = lambda: cluster.publish("quiet")
        cluster.on("quiet", lambda _message: self._background.spawn(alerts.reload_suppressions()))
        alerts.manager.shows_firing = lambda: cluster.is_leader  # asked at every scrape
        cluster.on("alert", self._alerts_changed)

    def _listen_grpc(
        self,
        server: grpc.aio.Server,
        grpc_host: str,
        grpc_port: int,
        server_tls: ServerTls | None,
        client_certs: ClientCerts | None,
    ) -> None:
        """Bind the gRPC port, and the mutual-TLS port when client certificates are required."""
        config = self.config
        address = join_host_port(grpc_host, grpc_port)
        try:
            if server_tls is None:
                self.grpc_port = server.add_insecure_port(address)
            else:
                self.grpc_port = server.add_secure_port(address, server_tls.credentials())
        except RuntimeError as exc:
            raise ConfigError(
                f"cannot listen on {address} for gRPC: "
                f"{why_bind_failed(grpc_host, grpc_port) or exc}: stop what listens there, or "
                "choose another address with --grpc-listen HOST:PORT"
            ) from exc
        if server_tls is not None and client_certs is not None:
            mtls_host, mtls_port = split_host_port(
                config.mtls_listen or f"{grpc_host}:{self.grpc_port + 1 if grpc_port else 0}",
                "--mtls-listen",
            )
            mtls_address = (
                f"[{mtls_host}]:{mtls_port}" if ":" in mtls_host else f"{mtls_host}:{mtls_port}"
            )
            try:
                client_certs.port = server.add_secure_port(
                    mtls_address, server_tls.mutual_credentials()
                )
            except RuntimeError as exc:
                raise ConfigError(
                    f"cannot listen on {mtls_address} for mutual TLS: "
                    f"{why_bind_failed(mtls_host, mtls_port) or exc} (choose another "
                    "with --mtls-listen HOST:PORT)"
                ) from exc

    async def start(self) -> None:
        """Open storage, load the fleet and start listening."""
        config = self.config
        grpc_host, grpc_port = split_host_port(config.grpc_listen, "--grpc-listen")
        http_host, http_port = split_host_port(config.http_listen, "--http-listen")
        # Every listener holds at most its share of the descriptors (rmm_server/listeners.py).
        budget = DescriptorBudget.of_this_process()
        if config.script_library_dir is not None:
            self.scripts = await asyncio.to_thread(ScriptLibrary.load, config.script_library_dir)
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the data directory {config.data_dir}: {exc}") from exc
        self.tls = server_tls = await asyncio.to_thread(self._tls)
        client_certs = None
        if server_tls is not None and config.require_client_certs:
            client_certs = server_tls.client_certs
        url = config.db_url or sqlite_url(config.data_dir)
        self.store = store = await asyncio.to_thread(open_store, url)
        replica_id = config.replica_id or default_replica_id(config.grpc_listen)
        _check_reuse_port(config, store.dialect, replica_id)
        if store.dialect == "postgresql":
            self.cluster = PgCluster(
                url, replica_id, self.metrics.registry, on_reconnect=self._reread_agents
            )
            self.fleet.loader = store.get_agent
        else:
            self.cluster = Cluster(replica_id, self.metrics.registry)
        cluster = self.cluster
        operators = Operators(store)
        self.audit = audit = AuditLog(AuditStore(store))
        await asyncio.to_thread(audit.prepare)
        self.admin_token_path = await asyncio.to_thread(operators.bootstrap_admin, config.data_dir)
        await asyncio.to_thread(self._load_fleet, store)
        self.alerts = alerts = AlertService(
            store,
            self.metrics.registry,
            config.policies_dir,
            offline_grace_seconds=config.offline_grace_seconds,
        )
        # Offline periods for contract reports (docs/desk.md), after the alerts' same grace.
        self._offline = OfflineRecorder(
            store, not_before=alerts.started_at + alerts.offline_grace_seconds
        )
        alerts.unknown_scripts = self.scripts.unknown_scripts
        alerts.script_params_problem = self.scripts.params_problem
        # Rules with `ticket: L1|L2|L3` open, reopen and resolve tickets (docs/desk.md).
        self.psa = self._start_psa(config.psa_webhook, config.psa_webhook_secret)
        alerts.ticket_hook = AlertTickets(self._tickets()).on_transition
        await asyncio.to_thread(alerts.load)
        if config.notify_config is not None:
            await self._start_notifications(config.notify_config, alerts)
        if config.agent_updates_dir is not None:
            self.updates = UpdateIndex(config.agent_updates_dir)
            await asyncio.to_thread(self.updates.scan)
        # One byte budget per agent for everything it makes this process store (reports,
        # inventory, command results), and one disk reserve: shared by both writers.
        byte_budget = AgentByteBudget(config.agent_byte_budget, config.agent_budget_window_seconds)
        # The embedded database's disk only: a PostgreSQL server watches its own.
        free_space = (
            FreeSpaceReserve(config.data_dir, config.min_free_space)
            if url.startswith("sqlite")
            else None
        )
        # Each agent's pending updates, taken from its reports when its list changes and
        # decided by the patch policies in force (docs/patching.md).
        self.patch_inventory = patch_inventory = PatchInventory(
            store,
            self.fleet.get,
            settings_from(lambda: alerts.policies.patches if alerts.policies else None),
            agents=lambda: [state.record for state in self.fleet.snapshot()],
        )
        patch_inventory.on_outcome = PatchMetrics(
            self.metrics.registry, patch_inventory.patches, self.fleet
        ).count
        self.chart_history = chart_history = ChartHistory(AgentHistoryStore(store))
        self.ingestor = ReportIngestor(
            store,
            self.fleet,
            self.metrics,
            after_store=chart_history.after_store(patch_inventory.chained(alerts.on_report)),
            offer_update=self.updates.offer_for if self.updates is not None else None,
            byte_budget=byte_budget,
            free_space=free_space,
        )
        self.ingestor.start()
        enrollment = Enrollment(
            store,
            self.fleet,
            ca_fingerprint=server_tls.ca_fingerprint if server_tls else "",
            client_certs=client_certs,
        )
        signer = await asyncio.to_thread(CommandSigner.load_or_create, config.data_dir)
        audit.checkpoints = CheckpointLog(
            config.data_dir,
            signer,
            replica=cluster.replica_id,
            file_name=checkpoint_file_name(cluster.replica_id if cluster.replicated else None),
            every=config.audit_checkpoint_every,
        )
        await asyncio.to_thread(audit.checkpoint)  # the head as found at start
        if isinstance(self.cluster, PgCluster):
            self.cluster.keys = [
                "signing:" + hashlib.sha256(signer.public_key).hexdigest()[:16],
                "ca:" + (server_tls.ca_fingerprint[:16] if server_tls is not None else "none"),
            ]
        self.commands = commands = CommandService(
            store,
            signer,
            audit=audit.append_many,
            metrics=self.metrics,
            byte_budget=byte_budget,
            free_space=free_space,
        )
        commands.cluster = cluster
        commands.msp_name = config.msp_name
        commands.start()
        commands.settled_hooks.append(patch_inventory.record_outcomes)
        alerts.remediate = Remediator(commands, lambda: self.scripts, alerts).on_firing
        self.patch_windows = build_patch_windows(
            store,
            commands,
            self.fleet,
            alerts,
            audit.append_many,
            lambda: self.scripts,
            site_zones=config.site_time_zones,
            inventory=patch_inventory,
        )
        self.credentials = credentials = AgentCredentials(store, self.fleet)
        credentials.cluster = cluster
        cluster.on("cmd", commands.deliver_forwarded)
        cluster.on("res", commands.settled_elsewhere)
        cluster.on("rev", credentials.revoked_elsewhere)
        cluster.on("agent", self._agents_changed)
        cluster.on("reload", self._reload_asked)
        operators.revoked = lambda operator_id: cluster.publish("opr", "o", [operator_id])
        cluster.on("opr", lambda message: operators.forget(str(i) for i in message.get("o", ())))
        if cluster.replicated:
            self._share_alerts(cluster, alerts)
        await cluster.start()
        limits = RateLimits(
            enroll=config.enroll_rate,
            operator=config.operator_rate,
            reports=config.report_rate,
            registry=self.metrics.registry,
        )
        server = grpc.aio.server(
            interceptors=[
                ServiceGuard(
                    self.fleet,
                    operators,
                    self.metrics,
                    audit,
                    client_certs=client_certs,
                    credentials=credentials,
                    limits=limits,
                )
            ],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                *grpc_listener_options(budget, reuse_port=config.reuse_port),
            ],
        )
        self.agent_servicer = AgentServicer(
            enrollment,
            self.ingestor,
            self.metrics,
            self.updates,
            commands,
            credentials=credentials,
            limits=limits,
            cluster=cluster,
            help_desk=HelpDesk(self._tickets(), audit, open_alerts_of(alerts)),
        )
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self.agent_servicer, server)
        operator_servicer = OperatorServicer(
            store,
            enrollment,
            alerts,
            commands=commands,
            consent_for=alerts.consent_for,
            scripts=self.scripts,
            audit=audit,
            operators=operators,
            credentials=credentials,
            cluster=cluster,
            notify=self.notify_reloader,
            patch_operations=PatchOperations(
                patch_inventory, self.fleet, commands, alerts.consent_for
            ),
        )
        # Operators' ticket changes go to the PSA too (the server's own: _tickets()).
        operator_servicer.ticket_events = tuple(self._ticket_events())
        operator_pb2_grpc.add_OperatorServiceServicer_to_server(
            operator_servicer,
            server,
        )
        self.health_servicer = health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        self._listen_grpc(server, grpc_host, grpc_port, server_tls, client_certs)
        await server.start()
        self.grpc_server = server
        await self._announce_health(True)
        self.storage_watch = StorageWatch(
            self._probe_storage, self._announce_health, registry=self.metrics.registry
        )
        self.storage_watch.start()

        renderer = MetricsRenderer(
            self.fleet,
            self.metrics.registry,
            export_of=cluster.export_of if cluster.replicated else None,
        )
        self.dashboard = dashboard = Dashboard(
            DashboardDeps(
                self.fleet,
                alerts,
                operators,
                audit,
                store,
                limits,
                config.insecure,
                chart_history,
                RunService(commands, self.fleet, self.scripts, alerts.consent_for),
                PrometheusCharts(config.prometheus_url) if config.prometheus_url else None,
                tuple(self._ticket_events()),
            )
        )
        told_replicas = operators.revoked

        def revoked(operator_id: str) -> None:
            # A revoked operator's dashboard sessions end with their token.
            dashboard.sessions.end_operator(operator_id)
            if told_replicas is not None:
                told_replicas(operator_id)

        operators.revoked = revoked
        self.http = HttpApi(
            http_host,
            http_port,
            renderer,
            self._healthy,
            max_connections=budget.http_connections,
            registry=self.metrics.registry,
            routes=dashboard.add_routes,
            ssl_context=http_ssl_context(server_tls) if server_tls is not None else None,
        )
        try:
            await self.http.start()
        except OSError as exc:
            # The HTTP listener binds its own socket: the errno says what is wrong.
            raise ConfigError(
                f"cannot listen on {join_host_port(http_host, http_port)} for HTTP: "
                f"{describe_bind_error(exc, http_port)}: stop what listens there, or choose "
                "another address with --http-listen HOST:PORT"
            ) from exc
        self.http_port = self.http.port

        # Jobs that write fleet-wide run on the leader only (with SQLite: this process): two
        # replicas pruning, expiring or escalating would race each other and notify twice.
        self.scheduler = AsyncIOScheduler()
        self.scheduler.add_job(
            self._leading(self._prune_reports),
            "interval",
            minutes=15,
            id="prune-reports",
            coalesce=True,
        )
        # On every replica (it syncs liveness first); only the leader raises offline alerts.
        # Every replica writes the chart points of the agents it holds.
        self.scheduler.add_job(
            chart_history.flush_async,
            "interval",
            seconds=60,
            id="chart-history",
            coalesce=True,
            max_instances=1,
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
            self._leading(alerts.escalate_overdue),
            "interval",
            seconds=config.escalation_check_seconds,
            id="escalation",
            coalesce=True,
            max_instances=1,
        )
        # Tickets past an SLA target go up a tier, and that tier is told (docs/desk.md).
        self.scheduler.add_job(
            self._leading(self._escalate_tickets),
            "interval",
            seconds=config.escalation_check_seconds,
            id="ticket-escalation",
            coalesce=True,
            max_instances=1,
        )
        # On every replica: each signs the head into its own checkpoint file.
        self.scheduler.add_job(
            self._checkpoint_audit,
            "interval",
            seconds=config.audit_checkpoint_seconds,
            id="audit-checkpoint",
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.add_job(
            self._leading(commands.expire_overdue),
            "interval",
            seconds=30,
            id="command-expiry",
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.start()
        await self._start_patch_windows(cluster)
        if server_tls is not None and server_tls.ca_fingerprint:
            log.info(
                "TLS CA fingerprint %s (agents: rmm-agent enroll --ca-fingerprint %s)",
                server_tls.ca_fingerprint,
                server_tls.ca_fingerprint,
            )
        if client_certs is not None:
            log.info("mutual TLS: agents make every call but Enroll on port %d", client_certs.port)
        if cluster.replicated:
            log.info(
                "replica %s: shares PostgreSQL with any other replicas; the leader runs offline "
                "detection, command expiry, escalation and pruning",
                cluster.replica_id,
            )
        log.info(
            "serving gRPC on %s:%d (%s), HTTP /metrics on %s:%d, %d agents, data in %s",
            grpc_host,
            self.grpc_port,
            "plaintext" if server_tls is None else "TLS",
            http_host,
            self.http_port,
            len(self.fleet),
            config.data_dir,
        )
        log.info(
            "descriptor limit %d: up to %d gRPC and %d HTTP connections (raise LimitNOFILE= "
            "for more agents)",
            budget.limit,
            budget.grpc_connections,
            budget.http_connections,
        )

    async def _start_patch_windows(self, cluster: Cluster) -> None:
        """Schedule the policies' patch windows (run by the leader only) and advance their runs."""
        windows = self.patch_windows
        if windows is None or self.scheduler is None:
            return
        self.scheduler.add_job(
            self._leading(windows.tick),
            "interval",
            seconds=self.config.patch_tick_seconds,
            id="patch-runs",
            coalesce=True,
            max_instances=1,
        )
        # New agents under a schedule join its window when it opens (planned again then); a
        # schedule that only a new agent's settings bring is stored within five minutes.
        self.scheduler.add_job(
            self._leading(windows.refresh), "interval", minutes=5, id="patch-plan", coalesce=True
        )
        await windows.refresh()
        await windows.lead(cluster.is_leader)
        cluster.leadership_callbacks.append(
            lambda leading: self._background.spawn(windows.lead(leading))
        )

    def _load_fleet(self, store: Store) -> None:
        latest = dict(store.latest_report_bodies())
        for record in store.all_agents():
            body = latest.get(record.id)
            report = agent_pb2.Report.FromString(decompress(body)) if body else None
            self.fleet.add(record, report)

    def _leading(self, job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Return `job` run only while this replica leads."""

        async def run() -> None:
            if self.cluster.is_leader:
                await job()

        return run

    async def _sync_liveness(self) -> None:
        if self.store is None:
            return
        now = time.time()
        # A margin for clocks that differ between replicas (each stamps its own reports).
        since = self._synced_until - 60.0
        try:
            rows = await asyncio.to_thread(agents_seen_since, self.store, since)
        except StorageError as exc:
            log.log(self._storage_error_level(), "cannot read when agents last reported: %s", exc)
            return
        self.fleet.refresh_liveness(rows, self.cluster.is_local)
        self._synced_until = now
        alerts = self.alerts
        if alerts is not None:
            # Silences and maintenance windows are announced when made ("quiet"); reading them
            # here too catches what a listener that was away missed.
            await alerts.reload_suppressions()

    def _agents_changed(self, message: dict[str, Any]) -> None:
        if self.store is not None:
            self._reread(message.get("a", ()), self.store.get_agent, self.fleet.refresh, "agents")

    def _alerts_changed(self, message: dict[str, Any]) -> None:
        if (alerts := self.alerts) is not None:
            store, manager = alerts.alert_store, alerts.manager
            self._reread(message.get("c", ()), store.get, manager.adopt, "alerts")

    def _reread(
        self,
        ids: Iterable[Any],
        get: Callable[[str], T | None],
        apply: Callable[[Iterable[T]], None],
        what: str,
    ) -> None:
        """Read the records another replica changed, in a worker thread, and apply those found."""
        wanted = [str(ident) for ident in ids]
        if not wanted:
            return

        async def reread() -> None:
            try:
                records = await asyncio.to_thread(lambda: [get(ident) for ident in wanted])
            except StorageError as exc:
                log.error("cannot read %d %s another replica changed: %s", len(wanted), what, exc)
                return
            apply(record for record in records if record is not None)

        self._background.spawn(reread())

    async def _reread_agents(self) -> None:
        """Read every agent again after the listener was away: what it missed is in there."""
        if self.store is None or self.credentials is None:
            return
        try:
            records = await asyncio.to_thread(self.store.all_agents)
        except StorageError as exc:
            log.error("cannot read the agents again after reconnecting: %s", exc)
            return
        newly_revoked = [
            [record.id, record.revoked_at, "an operator"]
            for record in records
            if record.revoked_at is not None
            and (known := self.fleet.get(record.id)) is not None
            and known.revoked_at is None
        ]
        self.fleet.refresh(records)
        if newly_revoked:
            self.credentials.revoked_elsewhere({"v": newly_revoked})

    @staticmethod
    def _start_psa(url: str, secret: bytes) -> PsaWebhook | None:
        if not url:
            return None
        psa = PsaWebhook(url, secret=secret)
        psa.start()
        log.info(
            "every ticket event is posted to %s (--psa-webhook), %s",
            url,
            "signed (X-RMM-Signature)" if secret else "unsigned (no --psa-webhook-secret-file)",
        )
        return psa

    def _ticket_events(self) -> list[Callable[[TicketRecord, TicketEvent], None]]:
        return [self.psa] if self.psa is not None else []

    def _tickets(self) -> Tickets:
        """Return the tickets service the server itself drives (alerts, SLA timers)."""
        assert self.store is not None
        return Tickets(
            self.store,
            audit=self._audit_system,
            on_event=self._ticket_events(),
        )

    def _audit_system(self, by: str, action: str, target: str, details: Mapping[str, Any]) -> None:
        """Audit a change the server made itself (an alert's ticket, an SLA escalation)."""
        if self.audit is not None:
            self.audit.append(by, action, target, details, "ok")

    async def _escalate_tickets(self) -> None:
        if self.store is None:
            return
        escalated = await asyncio.to_thread(self._tickets().escalate_due)
        await tell_tiers(self.alerts.submit if self.alerts is not None else None, escalated)

    async def _check_offline(self) -> None:
        if self.cluster.replicated:
            # Every replica: online/offline of agents reporting elsewhere reads the same here,
            # and the leader decides on the newest last_seen of every agent.
            await self._sync_liveness()
        if self.cluster.is_leader and self.alerts is not None:
            agents = [state.record for state in self.fleet.snapshot()]
            await self.alerts.check_offline(agents)
            if self._offline is not None:
                try:
                    await asyncio.to_thread(self._offline.check, agents)
                except StorageError as exc:
                    log.warning("offline periods not recorded, will retry: %s", exc)

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
        await self.alerts.note_notification(
            failure.alert_ids,
            receiver,
            notifier,
            notification.status,
            notification.group_key,
            error=str(error),
        )

    async def _notification_sent(
        self, receiver: str, notifier: str, notification: Notification
    ) -> None:
        if self.alerts is not None:
            await self.alerts.note_notification(
                [alert.alert_id for alert in notification.alerts],
                receiver,
                notifier,
                notification.status,
                notification.group_key,
            )

    def reload_in_background(self) -> None:
        """Start reload_policies() as a task whose failure is logged as one line (SIGHUP)."""
        self._background.spawn(self.reload_policies())

    def _reload_asked(self, message: dict[str, Any]) -> None:
        log.info(
            "reloading policies, scripts and the notification config: an operator asked replica %s",
            message["r"],
        )
        self._background.spawn(self.reload_policies())

    async def reload_policies(self) -> None:
        """Reload the policies, script library and notification config, re-index agent archives.

        On SIGHUP and when another replica asks. A broken policy set, script library,
        notification config or archive directory is refused and logged; the old one stays.
        """
        # The library first: policies' `remediate` may name a script added with them.
        await asyncio.to_thread(self.scripts.reload)  # logs why a broken library is refused
        if self.alerts is not None:
            await asyncio.to_thread(self.alerts.reload_policies)
        if self.patch_inventory is not None:
            # The rules may have changed: every agent's updates are decided again.
            await asyncio.to_thread(self.patch_inventory.redecide)
        if self.patch_windows is not None:
            await self.patch_windows.refresh()
        if self.notify_reloader is not None:
            await self.notify_reloader.reload()  # logs why a broken file is refused
        if self.updates is not None:
            try:
                await asyncio.to_thread(self.updates.scan)
            except ConfigError as exc:
                log.error("%s; the previous agent archives stay offered", exc)

    def _healthy(self) -> tuple[bool, str]:
        if self.grpc_server is None:
            return False, "starting\n"
        watch = self.storage_watch
        if watch is not None and not watch.reachable:
            return False, watch.describe() + "\n"
        return True, f"ok: {len(self.fleet)} agents\n"

    def _storage_error_level(self) -> int:
        """Return the level for a periodic job's storage failure: debug while the storage watch
        has announced the outage (one line says it all), error otherwise."""
        watch = self.storage_watch
        return logging.DEBUG if watch is not None and not watch.reachable else logging.ERROR

    def _probe_storage(self) -> None:
        """Ask the database something trivial (StorageWatch calls this in its own thread)."""
        if self.store is not None:
            with self.store.transaction("check that the database answers") as conn:
                conn.execute(text("SELECT 1"))

    async def _announce_health(self, serving: bool) -> None:
        """Tell the gRPC health service what /healthz says: serving, or not while storage is
        unreachable (load balancers then send agents and operators elsewhere)."""
        if self.health_servicer is None:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("rmm.v1.AgentService", "rmm.v1.OperatorService", ""):
            await self.health_servicer.set(service, status)

    async def _checkpoint_audit(self) -> None:
        if self.audit is None:
            return
        try:
            await asyncio.to_thread(self.audit.checkpoint)
        except (OSError, StorageError) as exc:
            log.error("cannot write an audit checkpoint, will retry: %s", exc)

    async def _prune_reports(self) -> None:
        if self.store is None:
            return
        cutoff = time.time() - self.config.retention_seconds
        try:
            removed = await asyncio.to_thread(self.store.prune_reports, cutoff)
        except StorageError as exc:
            log.log(self._storage_error_level(), "pruning old reports failed, will retry: %s", exc)
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
        if self.patch_windows is not None:
            await self.patch_windows.lead(False)
        if self.grpc_server is not None:
            stopping = asyncio.ensure_future(
                self.grpc_server.stop(self.config.shutdown_grace_seconds)
            )
            await asyncio.sleep(0)  # refuse new calls first, so no agent reconnects to this server
            if self.agent_servicer is not None:
                self.agent_servicer.close_streams()
            await stopping
        if self.ingestor is not None:
            await self.ingestor.stop()
        if self.commands is not None:
            await self.commands.stop()
        await self.cluster.stop()
        if self.credentials is not None:
            await self.credentials.flush()
        if self.alerts is not None:
            await self.alerts.flush()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.psa is not None:
            await asyncio.to_thread(self.psa.stop)
        if self.http is not None:
            await self.http.stop()
        if self.storage_watch is not None:
            await self.storage_watch.stop()
        # The last entries written (the calls that just finished) are signed before closing.
        await self._checkpoint_audit()
        if self.store is not None:
            self.store.close()
        log.info("server stopped")
