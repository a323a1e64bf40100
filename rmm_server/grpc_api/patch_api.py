"""ListPatches, ApprovePatches, DeclinePatches, InstallPatches, GetPatchReport: patching as
operators see it. The logic is rmm_server.patching.operations; these only convert."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc.aio

from rmm_common.errors import InvalidArgument
from rmm_proto import operator_pb2
from rmm_server.grpc_api.audit_calls import note_resolved_agent
from rmm_server.grpc_api.guard import current_operator
from rmm_server.patching.model import APPROVE, DECLINE
from rmm_server.patching.operations import InstallEvent, PatchOperations
from rmm_server.storage.patches import FleetUpdate, ResultRow, UpdateRow


def _target(request_target: operator_pb2.TargetSelector) -> operator_pb2.TargetSelector | None:
    return request_target if request_target.ByteSize() else None


def fleet_update(update: FleetUpdate) -> operator_pb2.PatchUpdate:
    """Convert one update of the fleet view to its message."""
    return operator_pb2.PatchUpdate(
        update_id=update.update_id,
        name=update.name,
        classification=update.classification,
        backend=update.backend,
        severity=update.severity,
        available=update.available,
        agents=update.agents,
        pending=update.pending,
        approved=update.approved,
        declined=update.declined,
        failed=update.failed,
        installed=update.installed,
        reboot_required=update.reboot_required,
    )


def agent_patch(row: UpdateRow, now: float) -> operator_pb2.AgentPatch:
    """Convert one agent's pending update to its message."""
    return operator_pb2.AgentPatch(
        update_id=row.update_id,
        name=row.name,
        current=row.current or "",
        available=row.available,
        classification=row.classification,
        backend=row.backend,
        severity=row.severity,
        published=row.published or 0.0,
        size_bytes=row.size_bytes or 0,
        reboot_required=row.reboot_required,
        state=row.state(now),
        why=row.why,
        not_before=row.not_before or 0.0,
        last_status=row.last_status,
        last_message=row.last_message,
        last_attempt_at=row.last_attempt_at or 0.0,
        first_seen=row.first_seen,
    )


def installed_patch(result: ResultRow) -> operator_pb2.AgentPatch:
    """Convert an update an agent installed (it left its list) to its message."""
    backend, _, key = result.update_id.partition(":")
    return operator_pb2.AgentPatch(
        update_id=result.update_id,
        name=key or result.update_id,
        available=result.version,
        backend=backend,
        state="installed",
        last_status=result.status,
        last_message=result.message,
        last_attempt_at=result.at,
    )


def patch_run(run: dict[str, Any]) -> operator_pb2.PatchRunInfo:
    """Return one run as described by patching.scheduling.describe_runs."""
    return operator_pb2.PatchRunInfo(
        id=run["id"],
        window=run["window"],
        starts_at=run["starts_at"],
        ends_at=run["ends_at"],
        state=run["state"],
        rings=[operator_pb2.PatchRunRing(**ring) for ring in run["rings"]],
        steps=run["agents"],
        installed=run["installed"],
        failed=run["failed"],
        missed=run["missed"],
        held=run["held"],
    )


def install_event(event: InstallEvent) -> operator_pb2.PatchInstallEvent:
    """Convert one agent's part of an install to its message."""
    message = operator_pb2.PatchInstallEvent(
        agent_id=event.agent.id,
        hostname=event.agent.hostname,
        status=event.status,
        command_id=event.command_id,
        error=event.error,
    )
    if event.result is not None:
        message.updates.extend(event.result.updates)
        message.reboot_required = event.result.reboot_required
    return message


class PatchApi:
    """OperatorService mixin; the servicer sets `patch_operations` (None: patching is off)."""

    patch_operations: PatchOperations | None

    def _patching(self) -> PatchOperations:
        if self.patch_operations is None:
            raise InvalidArgument("this server runs without patching (no patch inventory)")
        return self.patch_operations

    async def ListPatches(
        self, request: operator_pb2.ListPatchesRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListPatchesResponse:
        patching = self._patching()
        if request.agent.strip():
            if _target(request.target) is not None:
                raise InvalidArgument("give --agent or --target, not both")
            found = await patching.agent_list(request.agent.strip(), request.state)
            note_resolved_agent(found.agent.id)
            now = patching.clock()
            response = operator_pb2.ListPatchesResponse(
                agent_id=found.agent.id, hostname=found.agent.hostname, agents=1
            )
            if found.state is not None and found.state.install_requested_at is not None:
                response.install_requested_at = found.state.install_requested_at
                response.install_requested_by = found.state.install_requested_by
            response.agent_updates.extend(agent_patch(row, now) for row in found.rows)
            response.agent_updates.extend(
                installed_patch(r) for r in found.results if r.status == "installed"
            )
            return response
        view = await patching.fleet_list(_target(request.target), request.state)
        return operator_pb2.ListPatchesResponse(
            updates=[fleet_update(u) for u in view.updates],
            agents=view.agents,
            agents_without_list=view.without_list,
        )

    async def _decide(
        self, action: str, request: operator_pb2.PatchDecisionRequest
    ) -> operator_pb2.PatchDecisionResponse:
        outcome = await self._patching().decide(
            action,
            list(request.updates),
            _target(request.target),
            current_operator.get().name,
            request.comment.strip(),
        )
        return operator_pb2.PatchDecisionResponse(
            records=outcome.records,
            changed=outcome.changed,
            scope=outcome.scope,
            unknown=outcome.unknown,
        )

    async def ApprovePatches(
        self, request: operator_pb2.PatchDecisionRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.PatchDecisionResponse:
        return await self._decide(APPROVE, request)

    async def DeclinePatches(
        self, request: operator_pb2.PatchDecisionRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.PatchDecisionResponse:
        return await self._decide(DECLINE, request)

    async def InstallPatches(
        self, request: operator_pb2.InstallPatchesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[operator_pb2.PatchInstallEvent]:
        events = self._patching().install(
            request.target, request.now, current_operator.get().name, request.timeout_seconds
        )
        async for event in events:
            yield install_event(event)

    async def ListPatchRuns(
        self, request: operator_pb2.ListPatchRunsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListPatchRunsResponse:
        runs = await self._patching().runs(request.window.strip(), request.limit or 20)
        return operator_pb2.ListPatchRunsResponse(runs=[patch_run(r) for r in runs])

    async def GetPatchReport(
        self, request: operator_pb2.PatchReportRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.PatchReportResponse:
        rows = await self._patching().report(request.client.strip())
        return operator_pb2.PatchReportResponse(
            agents=[
                operator_pb2.PatchReportAgent(
                    agent_id=agent.id,
                    hostname=agent.hostname,
                    client=agent.client,
                    site=agent.site,
                    listed=c.listed,
                    pending=c.pending,
                    approved_missing=c.approved_missing,
                    declined=c.declined,
                    failed=c.failed,
                    last_install_at=c.last_install_at or 0.0,
                    reboot_pending=c.reboot_pending,
                    compliant=c.compliant,
                    install_requested_at=c.install_requested_at or 0.0,
                )
                for agent, c in rows
            ]
        )
