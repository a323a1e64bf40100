"""One interceptor for every call: who is calling, may they, and domain errors to status codes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from rmm_common.errors import (
    AlreadyExists,
    ConfigError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RmmError,
    StorageError,
    Unauthenticated,
    Unavailable,
)
from rmm_common.tokens import (
    AUTH_METADATA_KEY,
    BEARER_PREFIX,
    SecretKind,
    hash_secret,
    parse_secret,
)
from rmm_common.tokens import secret_matches as _matches
from rmm_server.agent_credentials import AgentCredentials, LiveCall, utc_text
from rmm_server.audit import AuditLog
from rmm_server.fleet import Fleet
from rmm_server.grpc_api.audit_calls import (
    SELF_AUDITED,
    CallAuditor,
    ResolvedAgents,
    error_outcome,
    is_audited,
    resolved_agents,
)
from rmm_server.operators import Operators
from rmm_server.ratelimit import RateLimited, RateLimits
from rmm_server.roles import Role, check_allowed
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import AgentRecord, OperatorRecord
from rmm_server.tls import ClientCerts

log = logging.getLogger(__name__)

AGENT_SERVICE = "/rmm.v1.AgentService/"
OPERATOR_SERVICE = "/rmm.v1.OperatorService/"
UNAUTHENTICATED_METHODS = frozenset({AGENT_SERVICE + "Enroll"})

current_agent: ContextVar[AgentRecord] = ContextVar("current_agent")
current_operator: ContextVar[OperatorRecord] = ContextVar("current_operator")
# The hash of the credential the current agent call authenticated with.
current_credential_hash: ContextVar[str] = ContextVar("current_credential_hash")

STATUS_OF: tuple[tuple[type[RmmError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (StorageError, grpc.StatusCode.UNAVAILABLE),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def status_for(error: RmmError) -> grpc.StatusCode:
    """Return the status code that stands for a domain error."""
    for kind, code in STATUS_OF:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNKNOWN


def bearer_from(metadata: Any) -> str:
    """Return the bearer secret in call metadata, or raise Unauthenticated."""
    for key, value in metadata or ():
        if key == AUTH_METADATA_KEY and isinstance(value, str):
            if value.startswith(BEARER_PREFIX):
                return value[len(BEARER_PREFIX) :]
            break
    raise Unauthenticated("no credential: the call must carry 'authorization: Bearer <secret>'")


class ServiceGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticate each call, check the operator's role, audit what changes anything, and map
    errors to status codes."""

    def __init__(
        self,
        fleet: Fleet,
        operators: Operators,
        metrics: ServerMetrics,
        audit: AuditLog,
        client_certs: ClientCerts | None = None,
        credentials: AgentCredentials | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        self.fleet = fleet
        self.operators = operators
        self.metrics = metrics
        self.auditor = CallAuditor(audit)
        # Set when the server requires client certificates: agent calls must show their own.
        self.client_certs = client_certs
        # Live agent calls (so a revocation cuts them) and credential rotation.
        self.credentials = credentials
        self.limits = limits

    def authenticate_agent(self, metadata: Any) -> AgentRecord:
        """Return the agent whose credential the call carries."""
        parsed = parse_secret(bearer_from(metadata), SecretKind.AGENT)
        record = self.fleet.get_or_load(parsed.ident)
        # While a rotation is unfinished both the current and the new credential are valid.
        if record is None or not (
            _matches(parsed.secret, record.credential_hash)
            or (
                record.pending_credential_hash is not None
                and _matches(parsed.secret, record.pending_credential_hash)
            )
        ):
            raise Unauthenticated(
                "agent credential not recognised: the agent must enroll again with a new token"
            )
        if record.revoked_at is not None:
            raise Unauthenticated(
                f"agent {record.id} was revoked at {utc_text(record.revoked_at)}: enroll it "
                "again with a new token"
            )
        current_credential_hash.set(hash_secret(parsed.secret))
        return record

    def _live_call(self, method: str) -> LiveCall | None:
        """Register an admitted agent call so a revocation can cut it; settle a rotation when
        the call is the first made with the agent's new credential."""
        if self.credentials is None or not method.startswith(AGENT_SERVICE):
            return None
        agent = current_agent.get(None)
        if agent is None:
            return None
        used = current_credential_hash.get("")
        if used and used == agent.pending_credential_hash:
            self.credentials.promote(agent)
        return self.credentials.calls.open(agent.id, used, method)

    def _admit(
        self, method: str, metadata: Any, context: grpc.aio.ServicerContext | None = None
    ) -> None:
        if method in UNAUTHENTICATED_METHODS:
            return
        try:
            if method.startswith(AGENT_SERVICE):
                agent = self.authenticate_agent(metadata)
                if self.client_certs is not None:
                    peer = context.auth_context() if context is not None else {}
                    self.client_certs.check_peer(peer, agent.id)
                current_agent.set(agent)
            elif method.startswith(OPERATOR_SERVICE):
                operator = self.operators.authenticate(bearer_from(metadata))
                # Set before the role check: a denied call is audited under its operator.
                current_operator.set(operator)
                if self.limits is not None:
                    self.limits.check_operator(operator.name)
                check_allowed(
                    method.removeprefix(OPERATOR_SERVICE), Role.parse(operator.role), operator.name
                )
        except Unauthenticated:
            caller = "agent" if method.startswith(AGENT_SERVICE) else "operator"
            self.metrics.auth_failures.labels(caller=caller).inc()
            raise

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        deserializer = handler.request_deserializer
        if handler.unary_unary or handler.unary_stream:
            # grpc decodes a unary request before any handler runs and answers a failure with
            # UNKNOWN: the handler gets the failure instead, to refuse it by name.
            deserializer = _tolerant(deserializer)
        if handler.unary_unary or handler.stream_unary:
            single = GuardedCall(self, details, handler.unary_unary or handler.stream_unary)
            make = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler
            )
            behaviour: Callable[..., Any] = single.unary
        else:
            single = GuardedCall(self, details, handler.unary_stream or handler.stream_stream)
            make = (
                grpc.unary_stream_rpc_method_handler
                if handler.unary_stream
                else grpc.stream_stream_rpc_method_handler
            )
            behaviour = single.stream
        return make(
            behaviour,
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )


class GuardedCall:
    """One method's handler behind the guard: admit the caller, run, audit, map errors."""

    def __init__(
        self, guard: ServiceGuard, details: grpc.HandlerCallDetails, inner: Callable[..., Any]
    ) -> None:
        self.guard = guard
        self.method: str = details.method
        self.metadata = details.invocation_metadata
        self.inner = inner
        self.call = self.method.removeprefix(OPERATOR_SERVICE)
        operator_call = self.method.startswith(OPERATOR_SERVICE)
        self.audited = operator_call and is_audited(self.call)
        # A call that audits itself never sees the role check refuse it: the guard records that.
        self.audits_refusal = operator_call and self.call in SELF_AUDITED

    async def unary(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Run a call with one response."""
        admitted = False
        # Each call runs in its own task: the holder is this call's alone.
        resolved_agents.set(ResolvedAgents())
        try:
            self.guard._admit(self.method, self.metadata, context)
            admitted = True
            live = self._enter(request)
            if live is None:
                response = await self.inner(request, context)
            else:
                response = await live.unary(self.inner(request, context), context)
        except (grpc.aio.AbortError, asyncio.CancelledError) as error:
            if self.audited:
                await self.audit(request, context, error)
            raise
        except Exception as error:
            await self._refuse(request, context, error, admitted)
        else:
            if self.audited:
                await self.audit(request, context, response=response)
            return response

    async def stream(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """Run a call that streams its responses."""
        admitted = False
        resolved_agents.set(ResolvedAgents())
        try:
            self.guard._admit(self.method, self.metadata, context)
            admitted = True
            live = self._enter(request)
            responses = self.inner(request, context)
            if live is not None:
                responses = live.stream(responses, context)
            async for response in responses:
                yield response
        except (grpc.aio.AbortError, asyncio.CancelledError) as error:
            if self.audited:
                await self.audit(request, context, error)
            raise
        except Exception as error:
            await self._refuse(request, context, error, admitted)
        else:
            if self.audited:
                await self.audit(request, context)

    def _enter(self, request: Any) -> LiveCall | None:
        """Refuse an undecodable request; register the admitted agent call as live."""
        if isinstance(request, Undecodable):
            raise request.refusal(self.method)
        return self.guard._live_call(self.method)

    async def _refuse(
        self, request: Any, context: grpc.aio.ServicerContext, error: Exception, admitted: bool
    ) -> None:
        """Audit a failed call when it is audited, then end it with its status code."""
        # A flood refused by a rate limit would flood the audit log: counted only.
        if (self.audited or (self.audits_refusal and not admitted)) and not isinstance(
            error, RateLimited
        ):
            await self.audit(request, context, error)
        await self.abort(context, error)

    async def audit(
        self,
        request: Any,
        context: grpc.aio.ServicerContext,
        error: BaseException | None = None,
        response: Any = None,
    ) -> None:
        """Record the call's outcome under its operator (none when unauthenticated)."""
        operator = current_operator.get(None)
        if operator is None:  # not authenticated: nobody to attribute it to
            return
        auditor = self.guard.auditor
        if isinstance(error, asyncio.CancelledError):
            auditor.record_detached(
                operator, self.call, request, "error: CANCELLED: the caller went away"
            )
            return
        await auditor.record(operator, self.call, request, call_outcome(context, error), response)

    async def abort(self, context: grpc.aio.ServicerContext, error: Exception) -> None:
        """End the call with the status code that stands for `error`."""
        if isinstance(error, RmmError):
            await context.abort(status_for(error), str(error))
        if isinstance(error, DecodeError):  # a streamed request message that is not one
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a message sent to {self.method} cannot be decoded ({error})",
            )
        log.exception("unexpected error in %s", self.method, exc_info=error)
        await context.abort(grpc.StatusCode.INTERNAL, "internal server error; see the server log")


def call_outcome(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    """Return how a call ended, as the audit log words it."""
    if error is None:
        return "ok"
    if isinstance(error, RmmError):
        return error_outcome(error, status_for(error))
    if isinstance(error, grpc.aio.AbortError):
        code = context.code() or grpc.StatusCode.UNKNOWN
        return f"error: {code.name}: {context.details() or ''}"
    return f"error: INTERNAL: {type(error).__name__}: {error}"


class Undecodable:
    """A request whose bytes are not the message the method takes."""

    def __init__(self, error: DecodeError) -> None:
        self.error = error

    def refusal(self, method: str) -> InvalidArgument:
        """Return the error that refuses the call."""
        return InvalidArgument(f"the request to {method} cannot be decoded ({self.error})")


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Wrap `deserializer` to return Undecodable instead of raising DecodeError."""
    if deserializer is None:
        return None
    decode = deserializer

    def tolerant(data: bytes) -> Any:
        try:
            return decode(data)
        except DecodeError as error:
            return Undecodable(error)

    return tolerant
