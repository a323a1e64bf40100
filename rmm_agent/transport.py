"""The agent's one gRPC channel to its server, and pinning the server's CA by its fingerprint.

Pinning: the operator gives the CA's fingerprint ("sha256:<hex>" over its DER), which
`rmm tokens create` prints. The agent (or the `rmm` CLI) opens one TLS connection without
verification, takes the chain the server shows, keeps the certificate whose fingerprint matches,
and from then on makes only verified TLS connections that trust that CA alone (not the system's
CAs). A server showing another chain is refused before any secret is sent.

Reading the chain: Python 3.13 has `SSLSocket.get_unverified_chain()`; 3.10-3.12 have the same
call on the private `SSLSocket._sslobj`. Where neither exists only the leaf can be read, so only a
self-signed server certificate can be pinned there.

Stdlib and grpc only: the `rmm` CLI imports this without the agent's other dependencies.
"""

from __future__ import annotations

import re
import socket
import ssl
from pathlib import Path

import grpc

from rmm_agent.state import Identity, StateDir
from rmm_common.errors import ConfigError
from rmm_common.net import fingerprint_der, split_host_port

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
_FINGERPRINT = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
# What grpc's TLS (BoringSSL) says when the server's certificate is not one the agent trusts.
_TLS_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "Peer name", "not in peer certificate")


def normalize_fingerprint(value: str) -> str:
    """Return a CA fingerprint as "sha256:<64 hex>", or raise ConfigError.

    Also takes the colon-separated upper-case form openssl prints (AA:BB:...).
    """
    compact = value.strip().lower().replace(":", "").removeprefix("sha256")
    match = _FINGERPRINT.match(compact)
    if match is None:
        raise ConfigError(
            f"--ca-fingerprint {value!r} is not a SHA-256 fingerprint: expected sha256:<64 hex "
            "digits>, as `rmm tokens create` or `rmm-server ca show` print it"
        )
    return "sha256:" + match.group(1)


def split_server(server: str) -> tuple[str, int]:
    """Split the server's HOST:PORT (or [v6]:PORT), or raise ConfigError."""
    return split_host_port(server, "server", "rmm.example.net:50051")


def _peer_chain(sock: ssl.SSLSocket) -> list[bytes]:
    """Return the DER certificates the server showed, leaf first (see the module's note)."""
    public = getattr(sock, "get_unverified_chain", None)  # Python 3.13+: DER bytes
    if public is not None:
        return [bytes(cert) for cert in public() or ()]
    private = getattr(getattr(sock, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:  # Python 3.10-3.12: _ssl.Certificate objects
        return [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in private() or ()]  # type: ignore[attr-defined]
    leaf = sock.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def fetch_pinned_ca(server: str, fingerprint: str, timeout: float = 15.0) -> str:
    """Return (PEM) the certificate in the server's chain whose fingerprint is `fingerprint`.

    Raises ConfigError naming both fingerprints when the server shows no such certificate, and
    when the server's certificate is not valid for the host name under that CA.
    """
    expected = normalize_fingerprint(fingerprint)
    host, port = split_server(server)
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # nothing is trusted from this connection but the pin
    unverified.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            unverified.wrap_socket(raw, server_hostname=host) as tls,
        ):
            chain = _peer_chain(tls)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"no TLS at {server}: {exc.reason or exc} (a plaintext server needs --insecure)"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot reach the server at {server}: {exc}") from exc
    shown = {fingerprint_der(der): der for der in chain}
    if expected not in shown:
        raise ConfigError(
            f"the server at {server} is not the one you expect: its certificate chain has "
            f"{', '.join(shown) or 'no certificate'}, not the CA {expected}; check the address "
            "and the fingerprint (rmm tokens create prints it)"
        )
    pem = ssl.DER_cert_to_PEM_cert(shown[expected])
    verified = ssl.create_default_context(cadata=pem)
    verified.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            verified.wrap_socket(raw, server_hostname=host),
        ):
            pass
    except ssl.SSLCertVerificationError as exc:
        raise ConfigError(
            f"the server at {server} shows the CA {expected} but its certificate does not pass "
            f"under it: {exc.verify_message}; if the name is missing, start the server with "
            f"--tls-san {host}"
        ) from exc
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot reach the server at {server}: {exc}") from exc
    return pem


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
    return any(marker in (details or "") for marker in _TLS_REFUSALS)


def tls_reason(details: str) -> str:
    """Return the TLS library's reason from grpc's details, without the connection preamble.

    grpc says "failed to connect to all addresses; last error: UNKNOWN: ipv4:...: Tls handshake
    failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:
    CERTIFICATE_VERIFY_FAILED: self signed certificate in certificate chain: OK"; the person
    needs the part from CERTIFICATE_VERIFY_FAILED on.
    """
    for marker in _TLS_REFUSALS:
        at = details.find(marker)
        if at >= 0:
            return details[at:].removesuffix(": OK")
    return details


def fingerprint_advice(flag: str = "--ca-fingerprint sha256:<hex>") -> str:
    """Say how to pin the server's CA and where its fingerprint is printed."""
    return (
        f"pin the server's CA with {flag}: `rmm-server ca show --data-dir DIR` on the server "
        "prints it, and `rmm tokens create` prints it beside every token"
    )


def describe_connect_failure(
    details: str, *, insecure: bool, trusted: str, pin_flag: str, again: str = ""
) -> str | None:
    """Say what a failed connection means for TLS and how to fix it; None if not about TLS.

    `details` are grpc's; `trusted` names what this side trusts ("" for the system's CAs:
    nothing pinned); `pin_flag` is how this client takes a fingerprint; `again` is what to redo
    after fixing it (an enrolled agent must enroll again). The text follows "the server at X: ".
    """
    if not insecure and "WRONG_VERSION_NUMBER" in details:
        # Our TLS hello was answered in plaintext HTTP/2: the server runs with --insecure.
        return (
            "it does not speak TLS (WRONG_VERSION_NUMBER): it runs with --insecure; give this "
            "side --insecure too, on loopback only"
        )
    if not insecure and any(marker in details for marker in _TLS_REFUSALS):
        reason = tls_reason(details)
        if not trusted:
            return (
                "its TLS certificate is not signed by any CA this host trusts, or not for that "
                f"name ({reason}): no CA is pinned, so only the system's CAs are trusted; "
                f"{again}{fingerprint_advice(pin_flag)}"
            )
        return (
            f"its TLS certificate is not signed by {trusted}, or not for that name ({reason}); "
            f"if the server's CA changed on purpose, {again}{fingerprint_advice(pin_flag)}"
        )
    if insecure and "Connection refused" not in details:
        # A TLS server closes a plaintext connection without a word: grpc says "Socket closed".
        return (
            f"no plaintext answer ({details}): a server serving TLS (the default) closes "
            f"--insecure connections; drop --insecure and {fingerprint_advice(pin_flag)}"
        )
    return None


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
