"""Addresses and certificate pins, read the same way by the agent, the server and the CLI."""

from __future__ import annotations

import hashlib

from rmm_common.errors import ConfigError


def split_host_port(value: str, what: str, example: str = "127.0.0.1:50051") -> tuple[str, int]:
    """Split HOST:PORT (or [v6]:PORT), or raise ConfigError naming `what` was given."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{what} {value!r} is not HOST:PORT (e.g. {example})")
    return host.strip("[]"), int(port)


def fingerprint_der(der: bytes) -> str:
    """Return the pinning fingerprint of a DER certificate: "sha256:<hex>"."""
    return "sha256:" + hashlib.sha256(der).hexdigest()
