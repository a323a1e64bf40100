"""The CLI's connection to the operator API, and what failed calls mean to a person.

grpc and the generated stubs are imported when a call is first made, not when a command module
imports this one: `rmm --help` and `rmm GROUP --help` never load them (about 150 ms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rmm_common.errors import ConfigError

if TYPE_CHECKING:
    import grpc

    from rmm_proto import operator_pb2_grpc

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_NOT_FOUND = 4

# By the status code's name, so that this table needs no grpc import.
_EXIT_FOR_CODE = {
    "INVALID_ARGUMENT": EXIT_USAGE,
    "UNAUTHENTICATED": EXIT_DENIED,
    "PERMISSION_DENIED": EXIT_DENIED,
    "NOT_FOUND": EXIT_NOT_FOUND,
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
    ca_fingerprint: str = ""  # "sha256:<hex>": trust only the CA in the server's chain with it
    timeout: float = 30.0
    allow_plaintext: bool = False  # --allow-plaintext-beyond-loopback: with --insecure only
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
        import grpc  # noqa: PLC0415

        from rmm_proto import operator_pb2_grpc  # noqa: PLC0415

        if self._channel is None:
            if self.insecure:
                self._check_plaintext()
                self._channel = grpc.insecure_channel(self.server)
            else:
                root = self.ca_cert.read_bytes() if self.ca_cert else None
                if self.ca_fingerprint:
                    from rmm_common.pinning import fetch_pinned_ca  # noqa: PLC0415

                    try:
                        root = fetch_pinned_ca(self.server, self.ca_fingerprint).encode()
                    except ConfigError as exc:
                        raise CliError(str(exc)) from None
                self._channel = grpc.secure_channel(
                    self.server, grpc.ssl_channel_credentials(root_certificates=root)
                )
        return operator_pb2_grpc.OperatorServiceStub(self._channel)

    def _check_plaintext(self) -> None:
        """Refuse --insecure beyond loopback unless allowed; warn loudly when it is."""
        from rmm_common.net import PLAINTEXT_BEYOND_LOOPBACK_FLAG, check_plaintext  # noqa: PLC0415

        try:
            beyond = check_plaintext(
                self.server, "your operator token and every command", self.allow_plaintext
            )
        except ConfigError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        if beyond:
            click.echo(
                f"rmm: WARNING: talking PLAINTEXT gRPC to {self.server} beyond loopback "
                f"({PLAINTEXT_BEYOND_LOOPBACK_FLAG}): your token and commands cross the network "
                "readable and changeable",
                err=True,
            )

    def trusted(self) -> str:
        """Name what this connection trusts for TLS: "" when nothing is pinned (system CAs)."""
        if self.ca_fingerprint:
            return f"the pinned CA {self.ca_fingerprint}"
        if self.ca_cert is not None:
            return f"the CA in --ca-cert {self.ca_cert}"
        return ""

    def call(self, method: Callable[..., T], request: Any) -> T:
        """Make one call with the operator's token; turn failures into CliError."""
        import grpc  # loaded by stub(), which made `method`  # noqa: PLC0415

        from rmm_common.tokens import bearer_metadata  # noqa: PLC0415

        try:
            return method(request, metadata=bearer_metadata(self.token), timeout=self.timeout)
        except grpc.RpcError as error:
            raise rpc_error_to_cli(error, self) from None

    def call_future(self, method: Any, request: Any) -> Any:
        """Start one call with the operator's token and return it unfinished (a grpc.Future):
        its answer is read with result(), and meanwhile this process goes on."""
        from rmm_common.tokens import bearer_metadata  # noqa: PLC0415

        return method.future(request, metadata=bearer_metadata(self.token), timeout=self.timeout)

    def result(self, future: Any) -> Any:
        """Wait for a call started by call_future; turn its failure into CliError."""
        import grpc  # noqa: PLC0415 - loaded by stub(), which made the call

        try:
            return future.result()
        except grpc.RpcError as error:
            raise rpc_error_to_cli(error, self) from None

    def stream(
        self, method: Callable[..., Iterator[T]], request: Any, timeout: float | None = None
    ) -> Iterator[T]:
        """Make one server-streaming call and yield its messages; failures become CliError.

        No deadline unless `timeout` is given: a run lasts as long as its slowest agent, and
        the server ends the stream itself when it gives up waiting. Closing the iterator (or
        Ctrl-C) cancels the call.
        """
        import grpc  # loaded by stub(), which made `method`  # noqa: PLC0415

        from rmm_common.tokens import bearer_metadata  # noqa: PLC0415

        # A grpc call object: an iterator that can also be cancelled.
        call: Any = method(request, metadata=bearer_metadata(self.token), timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as error:
            raise rpc_error_to_cli(error, self) from None
        finally:
            call.cancel()

    def close(self) -> None:
        """Close the channel if one was opened."""
        if self._channel is not None:
            self._channel.close()


def rpc_error_to_cli(error: grpc.RpcError, connection: Connection) -> CliError:
    """Return the CliError that explains a failed call on `connection`."""
    import grpc  # noqa: PLC0415

    from rmm_common.pinning import describe_connect_failure  # noqa: PLC0415

    server = connection.server
    code = error.code()
    details = error.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        advice = describe_connect_failure(
            details,
            code=code.name,
            insecure=connection.insecure,
            trusted=connection.trusted(),
            pin_flag="--ca-fingerprint sha256:<hex> (or RMM_CA_FINGERPRINT)",
        )
        if advice is not None:
            return CliError(f"the server at {server}: {advice}")
        return CliError(
            f"cannot reach the server at {server}: {details} (is it running, and is that its "
            "gRPC address?)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CliError(f"the server at {server} did not answer in time")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # The server's details say which limit and when to retry; say it is not a failure of
        # the call itself.
        return CliError(f"rate limited by the server at {server}: {details}")
    return CliError(details, _EXIT_FOR_CODE.get(code.name, EXIT_FAILED))
