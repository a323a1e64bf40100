"""The agent's one gRPC channel to its server."""

from __future__ import annotations

import grpc

CHANNEL_OPTIONS = (
    # Keepalive pings find a dead connection behind a NAT or a cut cable within about a minute.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 1_000),
    ("grpc.max_reconnect_backoff_ms", 60_000),
)


def open_channel(server: str, insecure: bool, ca_cert_pem: str = "") -> grpc.Channel:
    """Open a channel to `server` (HOST:PORT): plaintext only when asked, else TLS."""
    if insecure:
        return grpc.insecure_channel(server, options=CHANNEL_OPTIONS)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_cert_pem.encode() if ca_cert_pem else None
    )
    return grpc.secure_channel(server, credentials, options=CHANNEL_OPTIONS)


def describe_rpc_error(error: grpc.RpcError, server: str) -> str:
    """Say in one line what a failed call means for the person reading the log."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach the server at {server}: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the server at {server} did not answer in time"
    name = code.name if code is not None else "UNKNOWN"
    return f"the server at {server} refused the call ({name}): {details}"
