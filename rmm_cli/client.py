"""The CLI's connection to the operator API, and what failed calls mean to a person."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import grpc

from rmm_common.tokens import bearer_metadata
from rmm_proto import operator_pb2_grpc

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_NOT_FOUND = 4

_EXIT_FOR_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_DENIED,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_DENIED,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
}


class CliError(click.ClickException):
    """An error for the person at the terminal, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"rmm: {self.format_message()}", err=True)


@dataclass(slots=True)
class Connection:
    server: str
    token: str
    insecure: bool
    ca_cert: Path | None
    timeout: float = 30.0
    _channel: grpc.Channel | None = None

    def stub(self) -> operator_pb2_grpc.OperatorServiceStub:
        """Return a stub on a channel opened on first use."""
        if not self.server:
            raise CliError("no server given: pass --server HOST:PORT or set RMM_SERVER", EXIT_USAGE)
        if not self.token:
            raise CliError(
                "no operator token given: pass --token or set RMM_TOKEN (the first admin token "
                "is in the server's data directory, admin.token)",
                EXIT_USAGE,
            )
        if self._channel is None:
            if self.insecure:
                self._channel = grpc.insecure_channel(self.server)
            else:
                root = self.ca_cert.read_bytes() if self.ca_cert else None
                self._channel = grpc.secure_channel(
                    self.server, grpc.ssl_channel_credentials(root_certificates=root)
                )
        return operator_pb2_grpc.OperatorServiceStub(self._channel)

    def call(self, method: Callable[..., T], request: Any) -> T:
        """Make one call with the operator's token; turn failures into CliError."""
        try:
            return method(request, metadata=bearer_metadata(self.token), timeout=self.timeout)
        except grpc.RpcError as error:
            raise rpc_error_to_cli(error, self.server) from None

    def close(self) -> None:
        """Close the channel if one was opened."""
        if self._channel is not None:
            self._channel.close()


def rpc_error_to_cli(error: grpc.RpcError, server: str) -> CliError:
    """Return the CliError that explains a failed call."""
    code = error.code()
    details = error.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        return CliError(
            f"cannot reach the server at {server}: {details} (is it running? is --insecure "
            "needed or wrong?)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CliError(f"the server at {server} did not answer in time")
    return CliError(details, _EXIT_FOR_CODE.get(code, EXIT_FAILED))
