"""Operators and the audit log over OperatorService: add, list and revoke operators; list,
verify, export and archive audit entries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc.aio

from rmm_common.agent_words import WordKind, parse_agent_word
from rmm_common.audit_chain import AuditRecord
from rmm_proto import operator_pb2
from rmm_server.audit import AuditLog
from rmm_server.grpc_api.guard import current_operator
from rmm_server.operators import Operators
from rmm_server.storage import AgentRecord, OperatorRecord

DEFAULT_AUDIT_LIMIT = 100
MAX_AUDIT_LIMIT = 5000
EXPORT_PAGE = 1000


def operator_to_proto(record: OperatorRecord) -> operator_pb2.OperatorInfo:
    """Convert an operator (never its token's hash) to its message."""
    return operator_pb2.OperatorInfo(
        id=record.id,
        name=record.name,
        role=record.role,
        created_at=record.created_at,
        revoked_at=record.revoked_at or 0,
        created_by=record.created_by,
    )


def entry_to_proto(entry: AuditRecord) -> operator_pb2.AuditEntry:
    """Convert an audit entry to its message."""
    return operator_pb2.AuditEntry(**entry.to_json())


class AdminApi:
    """OperatorService mixin; the servicer sets `audit` and `operators` (the guard's own, so a
    revoke drops the token from the cache the guard checks)."""

    audit: AuditLog
    operators: Operators

    def _find_agent(self, ident: str, require_client: bool = False) -> AgentRecord:
        """Return the one agent an operator's word names (the servicer's own lookup)."""
        raise NotImplementedError

    def _audit_agent_filter(self, text: str) -> str:
        """Return what `rmm audit list --agent WORD` filters entries by: an id word as the id
        or its start (entries of agents since deleted still match), a hostname resolved to the
        one agent it names as `rmm agents show` resolves it (ambiguous or unknown: refused with
        the candidates). Entries name agents by id, never by the hostname an agent reports."""
        if not text:
            return ""
        word = parse_agent_word(text)
        if word.kind is WordKind.ID:
            return word.value
        return self._find_agent(text).id

    async def AddOperator(
        self, request: operator_pb2.AddOperatorRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.AddOperatorResponse:
        record, token = await asyncio.to_thread(
            self.operators.add, request.name, request.role, current_operator.get().name
        )
        return operator_pb2.AddOperatorResponse(operator=operator_to_proto(record), token=token)

    async def ListOperators(
        self, request: operator_pb2.ListOperatorsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListOperatorsResponse:
        records = await asyncio.to_thread(self.operators.list, request.include_revoked)
        return operator_pb2.ListOperatorsResponse(
            operators=[operator_to_proto(record) for record in records]
        )

    async def RevokeOperator(
        self, request: operator_pb2.RevokeOperatorRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.OperatorInfo:
        record = await asyncio.to_thread(
            self.operators.revoke, request.name, current_operator.get()
        )
        return operator_to_proto(record)

    async def ListAudit(
        self, request: operator_pb2.ListAuditRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListAuditResponse:
        agent = await asyncio.to_thread(self._audit_agent_filter, request.agent.strip())
        entries = await asyncio.to_thread(
            self.audit.list,
            request.since,
            request.operator.strip(),
            agent,
            min(request.limit or DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT),
        )
        return operator_pb2.ListAuditResponse(entries=[entry_to_proto(e) for e in entries])

    async def VerifyAudit(
        self, request: operator_pb2.VerifyAuditRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.VerifyAuditResponse:
        given = [(item.source or "given", list(item.lines)) for item in request.checkpoints]
        result = await asyncio.to_thread(self.audit.verify, given=given)
        newest = result.newest_checkpoint
        checkpoints = self.audit.checkpoints
        return operator_pb2.VerifyAuditResponse(
            ok=result.ok,
            entries=result.entries,
            first_seq=result.first_seq,
            last_seq=result.last_seq,
            problem=result.problem_text,
            archived_through=result.archived_through,
            checkpoint_problems=result.checkpoint_problems,
            checkpoints=result.checkpoints,
            checkpoints_checked=result.checkpoints_checked,
            newest_checkpoint_seq=newest.seq if newest is not None else 0,
            newest_checkpoint_at=newest.at if newest is not None else 0.0,
            newest_checkpoint_hash=newest.hash if newest is not None else "",
            checkpoint_sources=result.checkpoint_sources,
            signing_key=checkpoints.key if checkpoints is not None else "",
            archived_pins=[f"{pin.seq}:{pin.hash}" for pin in result.archived_pins],
        )

    async def ExportAudit(
        self, request: operator_pb2.ExportAuditRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[operator_pb2.AuditEntry]:
        # Page by page in a worker thread: a large log never sits in memory or on the loop.
        after = 0
        while True:
            entries = await asyncio.to_thread(self.audit.page, after, EXPORT_PAGE)
            for entry in entries:
                if request.before and entry.at >= request.before:
                    return
                yield entry_to_proto(entry)
            if len(entries) < EXPORT_PAGE:
                return
            after = entries[-1].seq

    async def ArchiveAudit(
        self, request: operator_pb2.ArchiveAuditRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ArchiveAuditResponse:
        removed, anchor = await asyncio.to_thread(
            self.audit.archive, request.through_seq, request.through_hash.strip().lower()
        )
        return operator_pb2.ArchiveAuditResponse(
            removed=removed,
            archived_through=anchor.archived_through,
            anchor_hash=anchor.anchor_hash,
        )
