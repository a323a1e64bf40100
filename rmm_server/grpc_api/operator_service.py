"""OperatorService: what the `rmm` command line asks of the server."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable

import grpc.aio

from rmm_common.agent_words import WordKind, parse_agent_word
from rmm_common.errors import ConfigError, InvalidArgument, NotFound
from rmm_common.tokens import new_ident
from rmm_proto import agent_pb2, commands_pb2, common_pb2, operator_pb2, operator_pb2_grpc
from rmm_server.agent_credentials import AgentCredentials
from rmm_server.agent_list_json import AgentRowTexts
from rmm_server.alerts.service import NOTIFY_EVENTS, AlertService
from rmm_server.audit import AuditLog
from rmm_server.cluster import Cluster
from rmm_server.commands import CommandService
from rmm_server.enrollment import Enrollment
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.admin_api import AdminApi
from rmm_server.grpc_api.audit_calls import note_resolved_agent
from rmm_server.grpc_api.command_api import CommandApi
from rmm_server.grpc_api.desk_api import DeskApi, TicketApi
from rmm_server.grpc_api.guard import current_operator
from rmm_server.grpc_api.patch_api import PatchApi
from rmm_server.grpc_api.report_api import ReportApi
from rmm_server.grpc_api.script_api import ScriptApi
from rmm_server.notify.reload import NotifyReloader
from rmm_server.operators import Operators
from rmm_server.patching.operations import PatchOperations
from rmm_server.placement import AgentPlacement
from rmm_server.reports import LazyInfo, decompress, readable_json
from rmm_server.scripts import ScriptLibrary
from rmm_server.selection import resolve_agent
from rmm_server.storage import AgentRecord, EnrollmentTokenRecord, Store
from rmm_server.storage.agent_list import AgentListRow, list_agent_columns, list_agent_rows
from rmm_server.storage.agent_lookup import agents_by_hostname, client_count
from rmm_server.storage.alerts import AlertQuery, AlertRecord
from rmm_server.storage.audit import AuditStore
from rmm_server.storage.store import AgentQuery
from rmm_server.storage.suppressions import (
    MaintenanceWindow,
    Matcher,
    Silence,
    format_matchers,
    parse_matchers,
)

DEFAULT_PAGE = 500
MAX_PAGE = 5000
STATUSES = ("", "online", "offline")
ALERT_STATES = ("pending", "firing", "resolved")
SEVERITIES = ("", "info", "warning", "critical")
DEFAULT_ALERT_LIMIT = 1000


def token_to_proto(token: EnrollmentTokenRecord, now: float) -> operator_pb2.EnrollmentToken:
    """Convert a stored token (never its secret) to its message."""
    return operator_pb2.EnrollmentToken(
        id=token.id,
        client=token.client,
        site=token.site,
        created_at=token.created_at,
        expires_at=token.expires_at or 0,
        max_uses=token.max_uses or 0,
        uses=token.uses,
        revoked_at=token.revoked_at or 0,
        created_by=token.created_by,
        state=token.state(now),
    )


def agent_to_summary(agent: AgentRecord, now: float) -> operator_pb2.AgentSummary:
    """Convert an agent record to the summary row operators list."""
    return _summary_message(agent, agent.online(now))


def list_row_to_summary(row: AgentListRow) -> operator_pb2.AgentSummary:
    """Convert a row of the agent list (its online state decided by the query) to its message."""
    return _summary_message(row, row.online)


def _summary_message(agent: AgentRecord | AgentListRow, online: bool) -> operator_pb2.AgentSummary:
    summary = agent.summary

    def metric(name: str) -> float:
        value = summary.get(name)
        return float(value) if isinstance(value, (int, float)) else math.nan

    return operator_pb2.AgentSummary(
        id=agent.id,
        hostname=agent.hostname,
        client=agent.client,
        site=agent.site,
        tags=agent.tags,
        os=agent.os,
        os_name=agent.os_name,
        os_version=agent.os_version,
        enrolled_at=agent.enrolled_at,
        last_seen=agent.last_seen or 0,
        online=online,
        interval_seconds=agent.interval_seconds,
        cpu_usage_ratio=metric("cpu_usage_ratio"),
        memory_used_ratio=metric("memory_used_ratio"),
        disk_used_ratio_max=metric("disk_used_ratio_max"),
        disk_used_ratio_max_mountpoint=str(summary.get("disk_used_ratio_max_mountpoint", "")),
        uptime_seconds=metric("uptime_seconds"),
        collector_errors=int(summary.get("collector_errors", 0)),
        last_sequence=agent.last_sequence,
        agent_version=agent.agent_version,
        revoked_at=agent.revoked_at or 0,
    )


def alert_to_proto(alert: AlertRecord, suppressed_by: str = "") -> operator_pb2.AlertInfo:
    """Convert a stored alert to its message."""
    return operator_pb2.AlertInfo(
        id=alert.id,
        rule=alert.rule_name,
        rule_key=alert.rule_key,
        agent_id=alert.agent_id,
        hostname=alert.hostname,
        client=alert.client,
        site=alert.site,
        state=alert.state,
        severity=alert.severity,
        tier=alert.tier,
        labels=alert.series_labels,
        annotations=alert.annotations,
        value=math.nan if alert.value is None else alert.value,
        started_at=alert.started_at,
        fired_at=alert.fired_at or 0,
        resolved_at=alert.resolved_at or 0,
        acknowledged_by=alert.acknowledged_by or "",
        acknowledged_at=alert.acknowledged_at or 0,
        ack_comment=alert.ack_comment or "",
        suppressed_by=suppressed_by,
        history_json=json.dumps(alert.history),
    )


def silence_to_proto(silence: Silence, now: float) -> operator_pb2.SilenceInfo:
    """Convert a silence to its message."""
    if silence.ends_at <= now:
        state = "expired"
    elif silence.problem:  # stored by an earlier release in a form that may not act
        state = "ignored"
    elif silence.starts_at > now:
        state = "pending"
    else:
        state = "active"
    return operator_pb2.SilenceInfo(
        id=silence.id,
        matchers=format_matchers(silence.matchers),
        starts_at=silence.starts_at,
        ends_at=silence.ends_at,
        created_by=silence.created_by,
        comment=silence.comment,
        created_at=silence.created_at,
        state=state,
    )


def window_to_proto(window: MaintenanceWindow, now: float) -> operator_pb2.MaintenanceInfo:
    """Convert a maintenance window to its message, with whether it is in force now."""
    current = window.current(now)
    return operator_pb2.MaintenanceInfo(
        id=window.id,
        name=window.name,
        schedule=window.schedule,
        start_at=window.start_at or 0,
        duration_seconds=window.duration_seconds,
        timezone=window.timezone,
        clients=window.clients,
        sites=window.sites,
        agents=window.agents,
        tags=window.tags,
        created_by=window.created_by,
        comment=window.comment,
        created_at=window.created_at,
        ended_at=window.ended_at or 0,
        active_now=current is not None,
        current_end=current[1] if current else 0,
        next_start=window.next_start(now) or 0,
    )


class OperatorServicer(
    AdminApi,
    CommandApi,
    ScriptApi,
    PatchApi,
    DeskApi,
    TicketApi,
    ReportApi,
    operator_pb2_grpc.OperatorServiceServicer,
):
    """Convert operator calls to domain calls; the guard has checked the caller's role."""

    def __init__(
        self,
        store: Store,
        enrollment: Enrollment,
        alerts: AlertService,
        clock: Callable[[], float] = time.time,
        fleet: Fleet | None = None,
        commands: CommandService | None = None,
        consent_for: Callable[[AgentRecord], int] | None = None,
        scripts: ScriptLibrary | None = None,
        audit: AuditLog | None = None,
        operators: Operators | None = None,
        credentials: AgentCredentials | None = None,
        cluster: Cluster | None = None,
        notify: NotifyReloader | None = None,
        patch_operations: PatchOperations | None = None,
    ) -> None:
        self.store = store
        self.patch_operations = patch_operations
        self.enrollment = enrollment
        self.alerts = alerts
        self.clock = clock
        self.fleet = fleet or enrollment.fleet
        self.commands = commands
        self.consent_for = consent_for or (lambda _agent: commands_pb2.CONSENT_NOTIFY)
        self.scripts = scripts if scripts is not None else ScriptLibrary()
        # The server passes the guard's own: a revoke must drop the token from its cache.
        self.audit = audit if audit is not None else AuditLog(AuditStore(store))
        self.operators = operators if operators is not None else Operators(store)
        # The server passes the guard's own: a revocation cuts the calls the guard registered.
        self.credentials = (
            credentials if credentials is not None else AgentCredentials(store, self.fleet)
        )
        self.cluster = cluster if cluster is not None else Cluster("local")
        # Reloads --notify-config with the policies (None: the server runs without one).
        self.notify = notify
        self.placement = AgentPlacement(store, self.fleet, self.cluster)
        # `rmm agents list --output json` rows, each rendered once per change (ListAgents with
        # json_rows): the page is the cached rows' text, the CLI prints it without decoding.
        self.agent_row_texts = AgentRowTexts(list_row_to_summary)

    async def CreateEnrollmentToken(
        self,
        request: operator_pb2.CreateEnrollmentTokenRequest,
        context: grpc.aio.ServicerContext,
    ) -> operator_pb2.CreateEnrollmentTokenResponse:
        record, secret = await asyncio.to_thread(
            self.enrollment.create_token,
            request.client,
            request.site,
            current_operator.get().name,
            request.expires_in_seconds or None,
            request.max_uses or None,
        )
        return operator_pb2.CreateEnrollmentTokenResponse(
            token=token_to_proto(record, self.clock()),
            secret=secret,
            ca_fingerprint=self.enrollment.ca_fingerprint,
        )

    async def ListEnrollmentTokens(
        self,
        request: operator_pb2.ListEnrollmentTokensRequest,
        context: grpc.aio.ServicerContext,
    ) -> operator_pb2.ListEnrollmentTokensResponse:
        tokens = await asyncio.to_thread(self.enrollment.list_tokens, request.include_inactive)
        now = self.clock()
        return operator_pb2.ListEnrollmentTokensResponse(
            tokens=[token_to_proto(token, now) for token in tokens]
        )

    async def RevokeEnrollmentToken(
        self,
        request: operator_pb2.RevokeEnrollmentTokenRequest,
        context: grpc.aio.ServicerContext,
    ) -> operator_pb2.EnrollmentToken:
        record = await asyncio.to_thread(self.enrollment.revoke_token, request.id)
        return token_to_proto(record, self.clock())

    async def ListAgents(
        self, request: operator_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListAgentsResponse:
        status = request.filter.status
        if status not in STATUSES:
            raise InvalidArgument(f"status {status!r} is not one of online, offline")
        limit = min(request.limit or DEFAULT_PAGE, MAX_PAGE)
        offset = _parse_page_token(request.page_token)
        query = AgentQuery(
            client=request.filter.client,
            site=request.filter.site,
            tag=request.filter.tag,
            status=status,
            limit=limit,
            offset=offset,
        )
        # Messages built in the worker thread too: 5,000 of them hold the event loop ~50 ms.
        if request.json_rows:
            return await asyncio.to_thread(self._agents_json_page, query, request.json_now)
        return await asyncio.to_thread(self._agents_page, query)

    def _agents_page(self, query: AgentQuery) -> operator_pb2.ListAgentsResponse:
        rows, total = list_agent_rows(self.store, query, self.clock())
        next_offset = query.offset + len(rows)
        return operator_pb2.ListAgentsResponse(
            agents=[list_row_to_summary(row) for row in rows],
            total=total,
            next_page_token=str(next_offset) if next_offset < total else "",
        )

    def _agents_json_page(self, query: AgentQuery, now: float) -> operator_pb2.ListAgentsResponse:
        """The page as `rmm agents list --output json` prints its rows, `now` the CLI's clock
        (last_seen_seconds_ago); online is decided by this server's clock, as for messages."""
        rows, tags, total = list_agent_columns(self.store, query, self.clock())
        page = self.agent_row_texts.page(rows, tags, now)
        next_offset = query.offset + page.rows
        return operator_pb2.ListAgentsResponse(
            json_rows=page.text,
            json_row_count=page.rows,
            total=total,
            next_page_token=str(next_offset) if next_offset < total else "",
        )

    async def GetAgent(
        self, request: operator_pb2.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.AgentDetail:
        return await asyncio.to_thread(self._agent_detail, request.agent.strip())

    async def RevokeAgent(
        self, request: operator_pb2.RevokeAgentRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.AgentSummary:
        agent = await asyncio.to_thread(self._find_agent, request.agent.strip())
        record = await self.credentials.revoke(agent, current_operator.get().name)
        return agent_to_summary(record, self.clock())

    async def RotateAgentCredential(
        self,
        request: operator_pb2.RotateAgentCredentialRequest,
        context: grpc.aio.ServicerContext,
    ) -> operator_pb2.AgentSummary:
        agent = await asyncio.to_thread(self._find_agent, request.agent.strip())
        record = await self.credentials.request_rotation(agent)
        return agent_to_summary(record, self.clock())

    async def UpdateAgent(
        self, request: operator_pb2.UpdateAgentRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.AgentSummary:
        # Moving or tagging lets an agent into a client's policies and commands: a hostname,
        # which the request cannot pin to a client, names it only in a one-client fleet.
        agent = await asyncio.to_thread(self._find_agent, request.agent.strip(), True)
        record = await self.placement.update(
            agent,
            request.client,
            request.site,
            list(request.add_tags),
            list(request.remove_tags),
            current_operator.get().name,
        )
        return agent_to_summary(record, self.clock())

    def _find_agent(self, ident: str, require_client: bool = False) -> AgentRecord:
        """Return the one agent (revoked ones too) an operator's word names, as RunCommand does.

        An id word is looked up by id only; a hostname must name exactly one agent of the whole
        fleet, else the candidates are listed (rmm_server.selection.resolve_agent); with
        `require_client`, not at all when the fleet spans several clients.
        """
        if not ident:
            raise InvalidArgument(
                "name an agent: its id, a unique start of its id, or host=NAME for its hostname"
            )
        word = parse_agent_word(ident)
        if word.kind is WordKind.ID:
            found = resolve_agent(self.store.find_agents(word.value), word)
            note_resolved_agent(found.id)
            return found
        # The hostname's look-alikes through their index, not every agent's name (issue #16).
        named = resolve_agent(
            agents_by_hostname(self.store, word.value),
            word,
            require_client=require_client,
            clients=client_count(self.store) if require_client else None,
        )
        agent = self.store.get_agent(named.id)
        if agent is None:
            raise NotFound(f"agent {named.id} was deleted while being looked up: try again")
        note_resolved_agent(agent.id)
        return agent

    def _find_agent_ids(self, words: list[str]) -> tuple[str, ...]:
        """Return the ids of the agents `words` name, each found as _find_agent finds it."""
        return tuple(dict.fromkeys(self._find_agent(word.strip()).id for word in words))

    def _silence_matchers(self, text: str) -> str:
        """Return a silence's matchers with each `agent=WORD` made the full id WORD starts.

        Alerts carry the full agent id: an id prefix kept as typed would match nothing.
        """
        matchers = parse_matchers(text)
        resolved = [
            Matcher(m.name, m.op, self._find_agent(f"agent={m.value}").id)
            if m.name == "agent" and m.op == "="
            else m
            for m in matchers
        ]
        return format_matchers(resolved)

    def _agent_detail(self, ident: str) -> operator_pb2.AgentDetail:
        agent = self._find_agent(ident)
        detail = operator_pb2.AgentDetail(
            summary=agent_to_summary(agent, self.clock()),
            kernel=agent.kernel,
            arch=agent.arch,
            inventory_hash=agent.inventory_hash,
            inventory_updated_at=agent.inventory_updated_at or 0,
        )
        body = self.store.latest_report_body(agent.id)
        if body is not None:
            report = agent_pb2.Report.FromString(decompress(body))
            detail.dropped_reports = report.dropped_reports
            detail.skipped_sequences = report.skipped_sequences
            for collector in report.collectors:
                detail.collectors.append(
                    operator_pb2.CollectorStatus(
                        name=collector.name,
                        ok=collector.ok,
                        error=collector.error,
                        duration_seconds=collector.duration_seconds,
                    )
                )
                detail.samples.extend(
                    common_pb2.Sample(name=s.name, labels=s.labels, value=s.value)
                    for s in collector.samples
                )
            detail.info_json = json.dumps(dict(LazyInfo(report))).encode()
        inventory = self.store.get_inventory(agent.id)
        if inventory is not None:
            # A row stored before ingest checked depth must not break the read: a placeholder.
            detail.inventory_json = readable_json(decompress(inventory), "the stored inventory")
        # Counted at ingest, stored with the next stored report: the fleet's copy is newer.
        live = self.fleet.get(agent.id)
        detail.conflicting_reports = max(
            int(agent.summary.get("conflicting_reports", 0)),
            int(live.summary.get("conflicting_reports", 0)) if live is not None else 0,
        )
        first, _last, count = self.store.report_stats(agent.id)
        detail.first_sequence = first or 0
        detail.reports_stored = count
        return detail

    async def ListAlerts(
        self, request: operator_pb2.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListAlertsResponse:
        states = tuple(request.states) or ("pending", "firing")
        unknown = [state for state in states if state not in ALERT_STATES]
        if unknown:
            raise InvalidArgument(
                f"alert state {unknown[0]!r} is not one of {', '.join(ALERT_STATES)}"
            )
        if request.severity not in SEVERITIES:
            raise InvalidArgument(f"severity {request.severity!r} is not info, warning or critical")
        agent_id = ""
        if request.agent.strip():
            # Alerts carry the full id: a word is resolved as `rmm agents show` resolves it, so
            # an id prefix or a hostname is not a filter that silently matches nothing.
            agent = await asyncio.to_thread(self._find_agent, request.agent.strip())
            agent_id = agent.id
        query = AlertQuery(
            states=states,
            client=request.client,
            severity=request.severity,
            agent_id=agent_id,
            limit=min(request.limit or DEFAULT_ALERT_LIMIT, MAX_PAGE),
        )
        found = await asyncio.to_thread(self.alerts.query, query)
        return operator_pb2.ListAlertsResponse(
            alerts=[alert_to_proto(alert, reason) for alert, reason in found]
        )

    async def AckAlert(
        self, request: operator_pb2.AckAlertRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.AlertInfo:
        alert = await self.alerts.acknowledge(
            request.id.strip(), current_operator.get().name, request.comment
        )
        return alert_to_proto(alert, self.alerts.suppressed_by(alert, self.clock()))

    async def GetAlert(
        self, request: operator_pb2.GetAlertRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.AlertDetail:
        alert = await self.alerts.find(request.id.strip())
        now = self.clock()
        detail = operator_pb2.AlertDetail(
            alert=alert_to_proto(alert, self.alerts.suppressed_by(alert, now)),
            silences=[silence_to_proto(s, now) for s in self.alerts.matching_silences(alert)],
            notifications=[
                operator_pb2.AlertNotification(
                    at=float(entry.get("at", 0)),
                    receiver=str(entry.get("receiver", "")),
                    notifier=str(entry.get("notifier", "")),
                    status=str(entry.get("status", "")),
                    delivered=entry.get("event") == "delivered",
                    error=str(entry.get("error", "")),
                    group_key=str(entry.get("group_key", "")),
                )
                for entry in alert.history
                if entry.get("event") in NOTIFY_EVENTS
            ],
        )
        agent = self.fleet.get(alert.agent_id) or await asyncio.to_thread(
            self.store.get_agent, alert.agent_id
        )
        if agent is not None:
            detail.agent.CopyFrom(agent_to_summary(agent, now))
            # The rule as it applies to this agent now: after a reload or a move it may differ
            # from the one that raised the alert, or be gone.
            rule = next((r for r in self.alerts.explain(agent) if r.key == alert.rule_key), None)
            if rule is not None:
                detail.expr = rule.expr
                detail.for_seconds = rule.for_seconds
                detail.rule_source = rule.source
        return detail

    async def CreateSilence(
        self, request: operator_pb2.CreateSilenceRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.SilenceInfo:
        matchers = await asyncio.to_thread(self._silence_matchers, request.matchers)
        silence = await self.alerts.create_silence(
            matchers,
            request.duration_seconds,
            request.comment,
            current_operator.get().name,
            request.starts_at,
        )
        return silence_to_proto(silence, self.clock())

    async def ListSilences(
        self, request: operator_pb2.ListSilencesRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListSilencesResponse:
        now = self.clock()
        return operator_pb2.ListSilencesResponse(
            silences=[
                silence_to_proto(s, now)
                for s in self.alerts.silences
                if request.include_expired or s.ends_at > now
            ]
        )

    async def ExpireSilence(
        self, request: operator_pb2.ExpireSilenceRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.SilenceInfo:
        silence = await self.alerts.expire_silence(request.id.strip())
        return silence_to_proto(silence, self.clock())

    async def AddMaintenance(
        self, request: operator_pb2.AddMaintenanceRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.MaintenanceInfo:
        if not request.name.strip():
            raise InvalidArgument("a maintenance window needs a --name")
        # Each word is resolved as `rmm agents show` resolves it and the window keeps the full
        # id: a window matches agents by id only, so a hostname or an id prefix kept as typed
        # would silently match nothing.
        agents = await asyncio.to_thread(self._find_agent_ids, list(request.agents))
        window = MaintenanceWindow.create(
            id=new_ident(),
            name=request.name.strip(),
            schedule=request.schedule.strip(),
            start_at=request.start_at or None,
            duration_seconds=request.duration_seconds,
            timezone=request.timezone or "UTC",
            clients=tuple(request.clients),
            sites=tuple(request.sites),
            agents=agents,
            tags=tuple(request.tags),
            created_by=current_operator.get().name,
            created_at=self.clock(),
            comment=request.comment,
        )
        return window_to_proto(await self.alerts.add_window(window), self.clock())

    async def ListMaintenance(
        self, request: operator_pb2.ListMaintenanceRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListMaintenanceResponse:
        now = self.clock()
        return operator_pb2.ListMaintenanceResponse(
            windows=[
                window_to_proto(w, now)
                for w in self.alerts.windows
                if request.include_ended or w.ended_at is None or w.ended_at > now
            ]
        )

    async def EndMaintenance(
        self, request: operator_pb2.EndMaintenanceRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.MaintenanceInfo:
        window = await self.alerts.end_window(request.id.strip())
        return window_to_proto(window, self.clock())

    async def ReloadPolicies(
        self, request: operator_pb2.ReloadPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ReloadPoliciesResponse:
        # The library reloads with the policies, first: a rule's `remediate` may name a script
        # added with it.
        script_errors = await self.reload_scripts()
        ok, errors = await asyncio.to_thread(self.alerts.reload_policies)
        notify_ok = True
        notify_errors: list[str] = []
        if self.notify is not None:
            notify_ok, notify_errors = await self.notify.reload()
        policies = self.alerts.policies
        # An operator behind a load balancer reaches one replica: the others reload too, each
        # from its own disk (a broken set is refused there as here, and logged).
        others = [r for r in self.cluster.live_replicas() if r != self.cluster.replica_id]
        if others:
            self.cluster.publish("reload")
        return operator_pb2.ReloadPoliciesResponse(
            ok=ok and not script_errors,
            errors=[*errors, *script_errors],
            # Alert and patch policy documents: both kinds load, and reload, together.
            policies=len(policies.policies) + len(policies.patches) if policies is not None else 0,
            rules=len(policies) if policies is not None else 0,
            other_replicas=len(others),
            notify_config=self.notify is not None,
            notify_ok=notify_ok,
            notify_errors=notify_errors,
            receivers=self.notify.receivers if self.notify is not None else 0,
        )

    async def ExplainPolicy(
        self, request: operator_pb2.ExplainPolicyRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ExplainPolicyResponse:
        agent = await asyncio.to_thread(self._find_agent, request.agent.strip())
        if self.alerts.policies is None:
            raise ConfigError("the server runs without --policies: no rules are in force")
        response = operator_pb2.ExplainPolicyResponse(agent_id=agent.id)
        for rule in self.alerts.explain(agent):
            explained = operator_pb2.ExplainedRule(
                key=rule.key,
                name=rule.name,
                policy=rule.policy,
                layer=rule.layer,
                source=rule.source,
                severity=rule.severity,
                tier=rule.tier,
                for_seconds=rule.for_seconds,
                keep_firing_for_seconds=rule.keep_firing_for_seconds,
                expr=rule.expr,
                clear=rule.clear or "",
            )
            for item in rule.provenance:
                explained.set_by[item.field] = f"{item.source} ({item.layer}, {item.policy})"
            response.rules.append(explained)
        for name, value, sources in self.alerts.explain_patches(agent):
            response.patch_settings.append(
                operator_pb2.ExplainedPatchSetting(
                    name=name,
                    value=value,
                    set_by=[f"{p.source} ({p.layer}, {p.policy}) {p.field}" for p in sources],
                )
            )
        return response

    async def ListFailedNotifications(
        self,
        request: operator_pb2.ListFailedNotificationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> operator_pb2.ListFailedNotificationsResponse:
        failures = await asyncio.to_thread(
            self.alerts.suppressions.failures, min(request.limit or 100, MAX_PAGE)
        )
        return operator_pb2.ListFailedNotificationsResponse(
            failures=[
                operator_pb2.FailedNotification(
                    at=f.at,
                    receiver=f.receiver,
                    notifier=f.notifier,
                    error=f.error,
                    status=f.status,
                    alert_ids=f.alert_ids,
                    group_key=f.group_key,
                )
                for f in failures
            ]
        )


def _parse_page_token(token: str) -> int:
    if not token:
        return 0
    try:
        offset = int(token)
    except ValueError:
        raise InvalidArgument(f"page token {token!r} is not one this server gave out") from None
    if offset < 0:
        raise InvalidArgument(f"page token {token!r} is not one this server gave out")
    return offset
