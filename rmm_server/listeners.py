"""The server's listening sockets: how many descriptors each may hold, the gRPC listener's
options, and what a failed bind means.

Every accepted connection costs a file descriptor, and the process has a fixed number of them
(RLIMIT_NOFILE: 1,024 unless the service unit raises it). A listener that accepts without bound
lets anyone who reaches one port exhaust them, and then every other listener, the database pool
and the log fail together. So the limit is split up front: a fixed share for HTTP (a few scrapers
and load balancers need few), a reserve for the database, files and gRPC's own pipes, and the
rest for gRPC, where each agent holds one connection.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The database pool, SQLite and its WAL, the log, epoll and eventfds, gRPC's and asyncio's pipes,
# the worker threads' sockets, script and archive files read on reload.
RESERVED_DESCRIPTORS = 128
# HTTP serves Prometheus, load balancers and people: a few connections at a time.
MAX_HTTP_CONNECTIONS = 256
# Past this, the soft limit is not raised further unasked (a unit's LimitNOFILE= is honoured).
RAISE_SOFT_LIMIT_TO = 65536
# A TCP connection that has not finished its TLS and HTTP/2 handshake by then is closed: one
# that never sends anything would otherwise hold its descriptor for gRPC's default, 120 s.
GRPC_HANDSHAKE_TIMEOUT_MS = 10_000
# A connection without a call for this long gets a GOAWAY (agents always hold a stream; an
# operator's CLI reconnects transparently).
GRPC_MAX_CONNECTION_IDLE_MS = 300_000
# The server pings a connection with calls every minute; no answer within 20 s closes it, so a
# peer that vanished (no FIN, no RST) gives its descriptor back in about 80 s.
GRPC_KEEPALIVE_TIME_MS = 60_000
GRPC_KEEPALIVE_TIMEOUT_MS = 20_000
# Streams one connection may open at once: an agent uses three, the CLI one or two.
GRPC_MAX_CONCURRENT_STREAMS = 100
# gRPC core's own hard limit of calls waiting to be taken by the server.
DEFAULT_MAX_PENDING_CALLS = 3_000
# Calls a connected agent may have open at once (report and command streams, a file transfer):
# what a fleet reconnecting at once (a server restart, a network back) asks for in one burst.
CALLS_PER_AGENT = 3


@dataclass(frozen=True, slots=True)
class DescriptorBudget:
    """How many connections each listener may hold within the process's descriptor limit."""

    limit: int
    http_connections: int
    grpc_connections: int

    @classmethod
    def for_limit(cls, limit: int) -> DescriptorBudget:
        """Split `limit` descriptors: a share for HTTP, a reserve, the rest for gRPC."""
        http = max(8, min(MAX_HTTP_CONNECTIONS, limit // 4))
        grpc_connections = max(16, limit - http - RESERVED_DESCRIPTORS)
        return cls(limit, http, grpc_connections)

    @classmethod
    def of_this_process(cls) -> DescriptorBudget:
        """Raise the soft descriptor limit towards the hard one, and split what there is."""
        return cls.for_limit(raise_descriptor_limit())


def raise_descriptor_limit(target: int = RAISE_SOFT_LIMIT_TO) -> int:
    """Raise RLIMIT_NOFILE's soft limit to min(hard, `target`) if lower; return the soft limit.

    The soft limit of 1,024 is a default for programs using select(); this one uses epoll
    (asyncio, gRPC) and poll (libpq), so it may use what the hard limit allows, as systemd
    recommends. A unit's LimitNOFILE= sets both and is honoured as it is.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = target if hard == resource.RLIM_INFINITY else min(hard, target)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        except (ValueError, OSError) as exc:  # a container may forbid it: keep what we have
            log.debug("cannot raise the descriptor limit from %d to %d: %s", soft, ceiling, exc)
        else:
            soft = ceiling
    if soft == resource.RLIM_INFINITY:
        return target
    return int(soft)


def grpc_listener_options(
    budget: DescriptorBudget, reuse_port: bool = False
) -> list[tuple[str, int]]:
    """Return the gRPC server options that bound what its listeners hold. `reuse_port`: share
    the port with other replicas on this host that ask for it too (--reuse-port)."""
    return [
        # gRPC sets SO_REUSEPORT by default: a second server on the same port would start and
        # take half the handshakes. Without it the second one's bind fails, as it should;
        # replicas that mean to share it (each a process of its own on one PostgreSQL) say so,
        # and the kernel then spreads new connections over them.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # Past this, gRPC closes new connections at once instead of running out of descriptors.
        ("grpc.max_allowed_incoming_connections", budget.grpc_connections),
        ("grpc.server_handshake_timeout_ms", GRPC_HANDSHAKE_TIMEOUT_MS),
        ("grpc.max_connection_idle_ms", GRPC_MAX_CONNECTION_IDLE_MS),
        ("grpc.keepalive_time_ms", GRPC_KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", GRPC_KEEPALIVE_TIMEOUT_MS),
        ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
        ("grpc.max_concurrent_streams", GRPC_MAX_CONCURRENT_STREAMS),
        # New calls wait in gRPC core until the Python server takes them, one at a time on its
        # event loop. Core's defaults end calls beyond 1,000 waiting (at random) and all beyond
        # 3,000, as CANCELLED or "INTERNAL: Internal error from Core": a burst of 5,000 streams
        # (1,700 agents reconnecting) lost two thirds of them. Every agent the descriptor budget
        # admits may wait instead; core still ends a call not taken within 30 s.
        ("grpc.server.max_pending_requests", pending_calls(budget)),
        ("grpc.server.max_pending_requests_hard_limit", pending_calls(budget)),
    ]


def pending_calls(budget: DescriptorBudget) -> int:
    """New calls that may wait for the server at once: every admitted agent's, reconnecting."""
    return max(DEFAULT_MAX_PENDING_CALLS, budget.grpc_connections * CALLS_PER_AGENT)


def join_host_port(host: str, port: int) -> str:
    """Return HOST:PORT, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def why_bind_failed(host: str, port: int) -> str | None:
    """Bind a plain socket to (host, port) to learn why a listener could not; None if it can.

    gRPC only says "Failed to bind"; the errno says whether the port is taken, the address is
    not this host's, or the port is privileged.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return describe_bind_error(exc, port)
    return None


def describe_bind_error(exc: OSError, port: int) -> str:
    """Say what a failed bind means, in words an operator can act on."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"address already in use (another rmm-server, or another program, listens there; "
            f"`ss -ltnp 'sport = :{port}'` shows which)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available (no interface of this host has it)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
    return exc.strerror or str(exc)
