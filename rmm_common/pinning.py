"""Pinning the server's CA by its fingerprint, and what a refused TLS connection means.

Pinning: the operator gives the CA's fingerprint ("sha256:<hex>" over its DER), which
`rmm tokens create` prints. The agent (or the `rmm` CLI) opens one TLS connection without
verification, takes the chain the server shows, keeps the certificate whose fingerprint matches,
and from then on makes only verified TLS connections that trust that CA alone (not the system's
CAs). A server showing another chain is refused before any secret is sent.

Reading the chain: Python 3.13 has `SSLSocket.get_unverified_chain()`; 3.10-3.12 have the same
call on the private `SSLSocket._sslobj`. Where neither exists only the leaf can be read, so only a
self-signed server certificate can be pinned there.

Stdlib only: the agent and the `rmm` CLI both pin, each with its own gRPC channel code.
"""

from __future__ import annotations

import re
import socket
import ssl

from rmm_common.errors import ConfigError
from rmm_common.net import fingerprint_der, split_host_port

_FINGERPRINT = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
# What grpc's TLS (BoringSSL) says when the server's certificate is not one this side trusts.
TLS_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "Peer name", "not in peer certificate")


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


def tls_reason(details: str) -> str:
    """Return the TLS library's reason from grpc's details, without the connection preamble.

    grpc says "failed to connect to all addresses; last error: UNKNOWN: ipv4:...: Tls handshake
    failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:
    CERTIFICATE_VERIFY_FAILED: self signed certificate in certificate chain: OK"; the person
    needs the part from CERTIFICATE_VERIFY_FAILED on.
    """
    for marker in TLS_REFUSALS:
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
    details: str, *, code: str, insecure: bool, trusted: str, pin_flag: str, again: str = ""
) -> str | None:
    """Say what a failed connection means for TLS and how to fix it; None if not about TLS.

    `code` is the call's gRPC status name: only UNAVAILABLE can be a connection that failed, any
    other status is the server's own answer over a working connection (a rate limit, a refused
    token), so it says nothing about TLS. `details` are grpc's; `trusted` names what this side
    trusts ("" for the system's CAs: nothing pinned); `pin_flag` is how this client takes a
    fingerprint; `again` is what to redo after fixing it (an enrolled agent must enroll again).
    The text follows "the server at X: ".
    """
    if code != "UNAVAILABLE":
        return None
    if not insecure and "WRONG_VERSION_NUMBER" in details:
        # Our TLS hello was answered in plaintext HTTP/2: the server runs with --insecure.
        return (
            "it does not speak TLS (WRONG_VERSION_NUMBER): it runs with --insecure; give this "
            "side --insecure too, on loopback only"
        )
    if not insecure and any(marker in details for marker in TLS_REFUSALS):
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
