"""Addresses and certificate pins, read the same way by the agent, the server and the CLI."""

from __future__ import annotations

import hashlib
import ipaddress

from rmm_common.errors import ConfigError


def split_host_port(value: str, what: str, example: str = "127.0.0.1:50051") -> tuple[str, int]:
    """Split HOST:PORT (or [v6]:PORT), or raise ConfigError naming `what` was given."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{what} {value!r} is not HOST:PORT (e.g. {example})")
    return host.strip("[]"), int(port)


# The second flag that plaintext gRPC beyond loopback needs, on the server, the agent and the CLI.
PLAINTEXT_BEYOND_LOOPBACK_FLAG = "--allow-plaintext-beyond-loopback"


def is_loopback(host: str) -> bool:
    """Say whether `host` (a name or an address, no brackets) is this machine's loopback.

    No DNS lookup: only "localhost" and loopback addresses (127.0.0.0/8, ::1, and 127.x written
    as an IPv4-mapped IPv6 address) count. "0.0.0.0", "::" and "" listen on every interface.
    """
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_plaintext(address: str, what: str, allowed: bool) -> bool:
    """Refuse plaintext gRPC with a non-loopback `address` unless explicitly allowed.

    Returns whether the address is beyond loopback (the caller then warns loudly); raises
    ConfigError naming the flag when it is and `allowed` is false. `what` says what would
    travel in plaintext ("agents' credentials and operators' tokens").
    """
    host, _ = split_host_port(address, "address")
    if is_loopback(host):
        return False
    if not allowed:
        raise ConfigError(
            f"--insecure with {address}: {what} would cross the network in plaintext, readable "
            f"and changeable by anyone on the path; use TLS (drop --insecure), or pass "
            f"{PLAINTEXT_BEYOND_LOOPBACK_FLAG} as well if that network is trusted (a VPN, a "
            "private container network)"
        )
    return True


def fingerprint_der(der: bytes) -> str:
    """Return the pinning fingerprint of a DER certificate: "sha256:<hex>"."""
    return "sha256:" + hashlib.sha256(der).hexdigest()
