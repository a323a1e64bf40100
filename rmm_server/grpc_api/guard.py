"""One interceptor for every call: who is calling, may they, and domain errors to status codes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc
import grpc.aio

from rmm_common.errors import (
    AlreadyExists,
    ConfigError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RmmError,
    StorageError,
    Unauthenticated,
)
from rmm_common.tokens import AUTH_METADATA_KEY, BEARER_PREFIX, SecretKind, parse_secret
from rmm_common.tokens import secret_matches as _matches
from rmm_server.fleet import Fleet
from rmm_server.operators import Operators
from rmm_server.roles import Role, check_allowed
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import AgentRecord, OperatorRecord

log = logging.getLogger(__name__)

AGENT_SERVICE = "/rmm.v1.AgentService/"
OPERATOR_SERVICE = "/rmm.v1.OperatorService/"
UNAUTHENTICATED_METHODS = frozenset({AGENT_SERVICE + "Enroll"})

current_agent: ContextVar[AgentRecord] = ContextVar("current_agent")
current_operator: ContextVar[OperatorRecord] = ContextVar("current_operator")

STATUS_OF: tuple[tuple[type[RmmError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (StorageError, grpc.StatusCode.UNAVAILABLE),
    (ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
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
    """Authenticate each call, check the operator's role, and map errors to status codes."""

    def __init__(self, fleet: Fleet, operators: Operators, metrics: ServerMetrics) -> None:
        self.fleet = fleet
        self.operators = operators
        self.metrics = metrics

    def authenticate_agent(self, metadata: Any) -> AgentRecord:
        """Return the agent whose credential the call carries."""
        parsed = parse_secret(bearer_from(metadata), SecretKind.AGENT)
        record = self.fleet.get(parsed.ident)
        if record is None or not _matches(parsed.secret, record.credential_hash):
            raise Unauthenticated(
                "agent credential not recognised: the agent must enroll again with a new token"
            )
        if record.revoked_at is not None:
            raise Unauthenticated(f"agent {record.id} has been revoked")
        return record

    def _admit(self, method: str, metadata: Any) -> None:
        if method in UNAUTHENTICATED_METHODS:
            return
        try:
            if method.startswith(AGENT_SERVICE):
                current_agent.set(self.authenticate_agent(metadata))
            elif method.startswith(OPERATOR_SERVICE):
                operator = self.operators.authenticate(bearer_from(metadata))
                check_allowed(
                    method.removeprefix(OPERATOR_SERVICE), Role.parse(operator.role), operator.name
                )
                current_operator.set(operator)
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
        method = details.method
        metadata = details.invocation_metadata
        guard = self

        async def abort(context: grpc.aio.ServicerContext, error: Exception) -> None:
            if isinstance(error, RmmError):
                await context.abort(status_for(error), str(error))
            log.exception("unexpected error in %s", method, exc_info=error)
            await context.abort(
                grpc.StatusCode.INTERNAL, "internal server error; see the server log"
            )

        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary

            async def single(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    guard._admit(method, metadata)
                    return await inner(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await abort(context, error)

            make = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler
            )
        else:
            inner = handler.unary_stream or handler.stream_stream

            async def single(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:  # type: ignore[misc]
                try:
                    guard._admit(method, metadata)
                    async for response in inner(request, context):
                        yield response
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await abort(context, error)

            make = (
                grpc.unary_stream_rpc_method_handler
                if handler.unary_stream
                else grpc.stream_stream_rpc_method_handler
            )
        return make(
            single,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
