"""What the guard writes to the audit log for an operator call: which calls, target, details,
outcome. Kept apart from the guard so that the guard only decides when."""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from rmm_common.errors import PermissionDenied
from rmm_server.audit import AuditLog
from rmm_server.roles import REQUIRED_ROLE
from rmm_server.storage import OperatorRecord

log = logging.getLogger(__name__)

READ_ONLY_PREFIXES = ("List", "Get", "Explain", "Verify", "Export")
# Calls whose service writes its own, finer entries (one per command sent and per result).
SELF_AUDITED = frozenset({"RunCommand"})
# A field whose name contains one of these never reaches the log, whatever its message.
SECRET_WORDS = ("secret", "token", "password", "passphrase", "credential", "private_key")
# The request field that names what a call acts on, the first one set in this order.
TARGET_FIELDS = ("id", "name", "agent", "agent_id", "alert_id", "client", "matchers")
# Target fields that hold an operator's word for one agent: the entry names the resolved id.
AGENT_FIELDS = frozenset({"agent", "agent_id"})
REDACTED = "[redacted]"


def is_audited(call: str) -> bool:
    """Say whether the guard writes an entry for the operator call `call` (a method name)."""
    return (
        call in REQUIRED_ROLE
        and not call.startswith(READ_ONLY_PREFIXES)
        and call not in SELF_AUDITED
    )


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def _bytes_summary(value: bytes) -> dict[str, int]:
    return {"bytes": len(value)}


def _scrub(message: Message, plain: dict[str, Any]) -> dict[str, Any]:
    """Replace secrets and bytes in MessageToDict's output, walking the message beside it."""
    for field, value in message.ListFields():
        name = field.name
        if name not in plain:
            continue
        if _is_secret(name):
            plain[name] = REDACTED
        elif field.type == FieldDescriptor.TYPE_BYTES:
            plain[name] = (
                [_bytes_summary(item) for item in value]
                if field.is_repeated
                else _bytes_summary(value)
            )
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                for key, item in value.items():
                    if value_field.type == FieldDescriptor.TYPE_BYTES:
                        plain[name][key] = _bytes_summary(item)
                    elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
                        plain[name][key] = _scrub(item, plain[name][key])
                    elif _is_secret(str(key)):
                        plain[name][key] = REDACTED
            elif field.is_repeated:
                plain[name] = [
                    _scrub(item, sub) for item, sub in zip(value, plain[name], strict=True)
                ]
            else:
                plain[name] = _scrub(value, plain[name])
    return plain


def request_details(request: Any) -> dict[str, Any]:
    """Return a request as JSON-ready data without secrets; bytes become their length."""
    if not isinstance(request, Message):
        return {}  # a client stream: its messages are not kept
    plain = MessageToDict(request, preserving_proto_field_name=True)
    return _scrub(request, plain)


class ResolvedAgents:
    """The agent ids an operator call's words resolved to, noted by the servicer as it resolves
    them: the audit entry names the agent by id, not by the word the operator typed (a hostname
    or an id prefix), so that `rmm audit list --agent ID` finds it."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: list[str] = []


# Set by the guard for each operator call; shared with worker threads (to_thread copies the
# context, and with it this holder).
resolved_agents: ContextVar[ResolvedAgents | None] = ContextVar("resolved_agents", default=None)


def note_resolved_agent(agent_id: str) -> None:
    """Record that the current operator call resolved an operator's word to `agent_id`."""
    holder = resolved_agents.get()
    if holder is not None and agent_id not in holder.ids:
        holder.ids.append(agent_id)


def request_target(request: Any) -> str:
    """Return the id or name a request acts on ("" when it names none)."""
    return _request_target(request)[1]


def _request_target(request: Any) -> tuple[str, str]:
    """Return the request field that names what it acts on, and its value (("", "") if none)."""
    if not isinstance(request, Message):
        return "", ""
    values = {
        field.name: str(value).strip()
        for field, value in request.ListFields()
        if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated
    }
    for name in TARGET_FIELDS:
        value = values.get(name, "")
        if value:
            site = values.get("site", "")
            return name, f"{value}/{site}" if name == "client" and site else value
    return "", ""


def result_id(response: Any) -> str:
    """Return the id of what a call created (its response's id or one of its messages' id)."""
    if not isinstance(response, Message):
        return ""
    for field, value in response.ListFields():
        if field.name == "id" and field.type == FieldDescriptor.TYPE_STRING:
            return str(value)
        if field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
            inner = value.DESCRIPTOR.fields_by_name.get("id")
            if inner is not None and inner.type == FieldDescriptor.TYPE_STRING and value.id:
                return str(value.id)
    return ""


def error_outcome(error: BaseException, code: grpc.StatusCode) -> str:
    """Return the outcome text of a call that failed with `error` (status `code`)."""
    if isinstance(error, PermissionDenied):
        return f"denied: {error}"
    return f"error: {code.name}: {error}"


class CallAuditor:
    """Write the audit entry of one operator call without blocking the event loop."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit
        self._pending: set[asyncio.Future[Any]] = set()

    def _entry(self, call: str, request: Any, response: Any) -> tuple[str, dict[str, Any]]:
        field, target = _request_target(request)
        details = request_details(request)
        holder = resolved_agents.get()
        resolved = holder.ids if holder is not None else []
        if field in AGENT_FIELDS and len(resolved) == 1:
            # The operator's word stays in the details (the request's own field).
            target = resolved[0]
        elif resolved:
            details["resolved_agent_ids"] = list(resolved)
        created = result_id(response)
        if created and created != target:
            details["result_id"] = created
        return target, details

    async def record(
        self,
        operator: OperatorRecord,
        call: str,
        request: Any,
        outcome: str,
        response: Any = None,
    ) -> None:
        """Write the entry; a failure to write is logged, never raised into the call."""
        target, details = self._entry(call, request, response)
        try:
            await self.audit.append_async(operator.name, call, target, details, outcome)
        except Exception:
            # The call has happened already and cannot be undone; say loudly that its record
            # is missing.
            log.exception(
                "AUDIT ENTRY NOT WRITTEN for %s by %s on %r (outcome %s)",
                call,
                operator.name,
                target,
                outcome,
            )

    def record_detached(
        self, operator: OperatorRecord, call: str, request: Any, outcome: str
    ) -> None:
        """Write the entry of a call that is being cancelled: the write runs on in a worker
        thread after the call's task has gone."""
        target, details = self._entry(call, request, None)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            None, self.audit.append, operator.name, call, target, details, outcome
        )
        self._pending.add(future)
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("AUDIT ENTRY NOT WRITTEN for a cancelled call: %s", future.exception())
