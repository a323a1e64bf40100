"""OperatorService: what the `rmm` command line asks of the server."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable

import grpc.aio

from rmm_common.errors import InvalidArgument, NotFound
from rmm_proto import agent_pb2, common_pb2, operator_pb2, operator_pb2_grpc
from rmm_server.enrollment import Enrollment
from rmm_server.grpc_api.guard import current_operator
from rmm_server.reports import collector_infos, decompress
from rmm_server.storage import AgentRecord, EnrollmentTokenRecord, Store
from rmm_server.storage.alerts import AlertQuery, AlertRecord, AlertStore
from rmm_server.storage.store import AgentQuery

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
        online=agent.online(now),
        interval_seconds=agent.interval_seconds,
        cpu_usage_ratio=metric("cpu_usage_ratio"),
        memory_used_ratio=metric("memory_used_ratio"),
        disk_used_ratio_max=metric("disk_used_ratio_max"),
        disk_used_ratio_max_mountpoint=str(summary.get("disk_used_ratio_max_mountpoint", "")),
        uptime_seconds=metric("uptime_seconds"),
        collector_errors=int(summary.get("collector_errors", 0)),
        last_sequence=agent.last_sequence,
        agent_version=agent.agent_version,
    )


def alert_to_proto(alert: AlertRecord) -> operator_pb2.AlertInfo:
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
    )


class OperatorServicer(operator_pb2_grpc.OperatorServiceServicer):
    """Convert operator calls to domain calls; the guard has checked the caller's role."""

    def __init__(
        self, store: Store, enrollment: Enrollment, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.alert_store = AlertStore(store)
        self.enrollment = enrollment
        self.clock = clock

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
            token=token_to_proto(record, self.clock()), secret=secret
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
        now = self.clock()
        agents, total = await asyncio.to_thread(self.store.list_agents, query, now)
        next_offset = offset + len(agents)
        return operator_pb2.ListAgentsResponse(
            agents=[agent_to_summary(agent, now) for agent in agents],
            total=total,
            next_page_token=str(next_offset) if next_offset < total else "",
        )

    async def GetAgent(
        self, request: operator_pb2.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.AgentDetail:
        return await asyncio.to_thread(self._agent_detail, request.agent.strip())

    def _agent_detail(self, ident: str) -> operator_pb2.AgentDetail:
        if not ident:
            raise InvalidArgument("name an agent: its id, a unique start of its id, or hostname")
        agent = self.store.get_agent(ident)
        if agent is None:
            matches = self.store.find_agents(ident)
            if not matches:
                raise NotFound(f"no agent matches {ident!r}: see `rmm agents list`")
            if len(matches) > 1:
                names = ", ".join(f"{m.id[:12]} ({m.hostname})" for m in matches[:5])
                raise InvalidArgument(
                    f"{ident!r} matches {len(matches)} agents ({names}): give more of the id"
                )
            agent = matches[0]
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
            detail.info_json = json.dumps(collector_infos(report)).encode()
        inventory = self.store.get_inventory(agent.id)
        if inventory is not None:
            detail.inventory_json = decompress(inventory)
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
        query = AlertQuery(
            states=states,
            client=request.client,
            severity=request.severity,
            agent_id=request.agent,
            limit=min(request.limit or DEFAULT_ALERT_LIMIT, MAX_PAGE),
        )
        alerts = await asyncio.to_thread(self.alert_store.query, query)
        return operator_pb2.ListAlertsResponse(alerts=[alert_to_proto(a) for a in alerts])


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
