"""The agent's one gRPC channel to its server, and what a failed call means.

Pinning the server's CA, which the `rmm` CLI does too, is rmm_common/pinning.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

import grpc

from rmm_agent.state import Identity, StateDir
from rmm_common.pinning import TLS_REFUSALS, describe_connect_failure, split_server

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


def make_client_key() -> tuple[bytes, str]:
    """Return a new P-256 key (PEM) and a certificate request (PEM) for it."""
    # Imported here: cryptography is the agent's dependency, not the `rmm` CLI's.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname() or "rmm")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def open_channel(
    server: str,
    insecure: bool,
    ca_cert_pem: str = "",
    client_key_pem: bytes = b"",
    client_cert_pem: str = "",
) -> grpc.Channel:
    """Open a channel to `server` (HOST:PORT): plaintext only when asked, else TLS.

    `ca_cert_pem`, when given, is the only CA trusted (else the system's); a client key and
    certificate make it mutual TLS.
    """
    if insecure:
        return grpc.insecure_channel(server, options=CHANNEL_OPTIONS)
    # Both or neither: grpc's C core aborts the process on a key without its certificate.
    mutual = bool(client_key_pem and client_cert_pem)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_cert_pem.encode() if ca_cert_pem else None,
        private_key=client_key_pem if mutual else None,
        certificate_chain=client_cert_pem.encode() if mutual else None,
    )
    return grpc.secure_channel(server, credentials, options=CHANNEL_OPTIONS)


def agent_address(identity: Identity) -> str:
    """Return where the agent makes its calls: the mutual-TLS port when it has one."""
    if not identity.mtls_port:
        return identity.server
    host, _ = split_server(identity.server)
    return f"[{host}]:{identity.mtls_port}" if ":" in host else f"{host}:{identity.mtls_port}"


def agent_channel(identity: Identity, state_dir: Path) -> grpc.Channel:
    """Open the enrolled agent's channel: its pinned CA, and its client certificate if any."""
    key = StateDir(state_dir).load_client_key() if identity.client_cert_pem else b""
    return open_channel(
        agent_address(identity),
        identity.insecure,
        identity.ca_cert_pem,
        key,
        identity.client_cert_pem,
    )


def is_tls_refusal(error: grpc.RpcError) -> bool:
    """Say whether a call failed because the server's certificate is not one we trust."""
    details = error.details() if hasattr(error, "details") else str(error)
    return any(marker in (details or "") for marker in TLS_REFUSALS)


def describe_rpc_error(error: grpc.RpcError, server: str, *, pinned: bool) -> str:
    """Say in one line what a failed call means for the person reading the log.

    `pinned`: whether a CA was pinned for this connection (else the system's CAs are trusted),
    which changes what a refused certificate means.
    """
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if is_tls_refusal(error):
        advice = describe_connect_failure(
            details or "",
            code=code.name if code is not None else "UNAVAILABLE",
            insecure=False,
            trusted="the CA this agent pinned at enrollment" if pinned else "",
            pin_flag="--ca-fingerprint sha256:<hex>",
            again="enroll again (rmm-agent enroll --force) and ",
        )
        return f"refused the server at {server}: {advice or details}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach the server at {server}: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the server at {server} did not answer in time"
    name = code.name if code is not None else "UNKNOWN"
    return f"the server at {server} refused the call ({name}): {details}"
