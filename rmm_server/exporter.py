"""Prometheus exposition of the fleet, rendered from current state at scrape time.

Each agent's series are turned into text once, when its report arrives (exposition.py: a dict of
family name to UTF-8 lines), and the fleet keeps them beside the agent's record. A scrape only
gathers those cached fragments family by family (the text format wants every line of a family in
one group, so the page is family-major while the fragments are per agent) and adds the series that
depend on the clock (up, seconds of the last report), from lines cached per agent. A removed
agent's fragments go with it, so its series disappear from the next scrape. Server internals come
from a prometheus_client registry.

What a scrape costs is the number of fragments it gathers (about 60 per agent), so the fleet can
be split between scrape jobs: shard K of N holds the agents whose id hashes to K (CRC-32 mod N),
and shard 0 also carries what is fleet-wide (rmm_agents, the server's own metrics). The shards'
pages together hold exactly the lines of the whole page, each once.

gzip is a stream of members (RFC 1952 allows several; Go's compress/gzip, which Prometheus reads
with, and Python's gzip read them all as one body): one per block of agents within a family, each
compressed once and reused while its lines are unchanged, the changed ones compressed on two
threads (zlib releases the GIL while it deflates).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from operator import call
from typing import TYPE_CHECKING, NamedTuple

from prometheus_client import CollectorRegistry, generate_latest

from rmm_common.metric_catalog import catalog
from rmm_server.exposition import (
    PREFIX,
    agent_label_prefix,
    escape_label_value,
    format_value,
)

if TYPE_CHECKING:
    from rmm_server.cluster import Export
    from rmm_server.fleet import Fleet
    from rmm_server.storage import AgentRecord

# Series the server derives for every agent, beside what the agent reported.
DERIVED_FAMILIES: dict[str, tuple[str, str]] = {
    "rmm_agent_up": ("gauge", "1 when the agent reported within its last 3 intervals, else 0."),
    "rmm_agent_last_report_timestamp_seconds": (
        "gauge",
        "Unix time the server received the agent's latest report.",
    ),
    "rmm_agent_info": (
        "gauge",
        "Always 1; labels carry the agent's hostname, OS and agent version.",
    ),
    "rmm_agent_collector_success": (
        "gauge",
        "1 when the collector succeeded in the agent's latest report, else 0.",
    ),
    "rmm_agent_collector_duration_seconds": (
        "gauge",
        "Time the collector took in the agent's latest report.",
    ),
    "rmm_agent_report_interval_seconds": ("gauge", "The agent's report interval."),
    "rmm_agent_reports_dropped_total": (
        "counter",
        "Reports the agent dropped undelivered because its spool was full, since it enrolled.",
    ),
    "rmm_agent_exporter_series_dropped": (
        "gauge",
        "Series of the agent's latest report left out of /metrics: over the exporter's "
        "per-agent budget of series or bytes.",
    ),
    "rmm_agents": ("gauge", "Agents known to this server, by client, site and status."),
}

_UP = "rmm_agent_up"
_LAST = "rmm_agent_last_report_timestamp_seconds"
_AGENTS = "rmm_agents"

# The most shards one fleet may be split into: more would only multiply scrape jobs.
MAX_SHARDS = 1024
# Agents per gzip member within a family: big enough to compress about as well as one stream
# (a member per agent and family would be ~240 bytes and compress 2x instead of 6x), small enough
# that a family whose lines did not change since the last scrape is reused block by block.
GZIP_BLOCK_AGENTS = 256
GZIP_LEVEL = 1
GZIP_THREADS = 2
GZIP_IN_FLIGHT = 8  # blocks handed to the threads and not yet taken back
# Compressed members of a shard nobody scraped for this long are let go.
MEMBERS_IDLE_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class Shard:
    """Part `index` of `count` of the fleet: the agents whose id's CRC-32 mod `count` is `index`.
    Shard 0 also carries the fleet-wide series (rmm_agents, the server's own metrics)."""

    index: int
    count: int

    def holds(self, agent_id: str) -> bool:
        """Say whether the agent's series belong to this shard."""
        return agent_bucket(agent_id) % self.count == self.index

    @classmethod
    def parse(cls, shard: str | None, of: str | None) -> Shard | None:
        """Read the `shard` and `of` query parameters (both or neither); ValueError says what
        is wrong and how to ask."""
        if shard is None and of is None:
            return None
        example = "e.g. /metrics?shard=0&of=4 ... /metrics?shard=3&of=4"
        if shard is None or of is None:
            raise ValueError(f"/metrics takes shard= and of= together ({example})")
        try:
            index, count = int(shard), int(of)
        except ValueError:
            raise ValueError(
                f"/metrics?shard={shard!r}&of={of!r}: both must be whole numbers ({example})"
            ) from None
        if not 1 <= count <= MAX_SHARDS:
            raise ValueError(f"/metrics: of={count} must be from 1 to {MAX_SHARDS} ({example})")
        if not 0 <= index < count:
            raise ValueError(
                f"/metrics: shard={index} must be from 0 to {count - 1} for of={count} ({example})"
            )
        return cls(index, count)


def agent_bucket(agent_id: str) -> int:
    """Return the number an agent is sharded by: stable across processes and restarts."""
    return zlib.crc32(agent_id.encode())


@lru_cache(maxsize=1)
def _catalog() -> dict[str, tuple[str, str]]:
    return {PREFIX + name: (spec.kind, spec.help) for name, spec in catalog().items()}


def family_metadata(family: str) -> tuple[str, str]:
    """Return (type, help) for an exported family name."""
    known = DERIVED_FAMILIES.get(family) or _catalog().get(family)
    if known:
        return known
    kind = "counter" if family.endswith("_total") else "gauge"
    return kind, "Reported by the agent; not in this server's metric catalog."


@lru_cache(maxsize=4096)
def _header(family: str) -> bytes:
    kind, help_text = family_metadata(family)
    return f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n".encode()


@dataclass(slots=True)
class _AgentLines:
    """The clock-dependent lines of one agent, rendered once per label change or report."""

    client: str
    site: str
    bucket: int
    prefix: str
    up: tuple[bytes, bytes]  # offline, online
    last_seen: float | None = None
    last_line: bytes = b""


def _agent_lines(record: AgentRecord) -> _AgentLines:
    prefix = agent_label_prefix(record)
    return _AgentLines(
        record.client,
        record.site,
        agent_bucket(record.id),
        prefix,
        (f"{_UP}{{{prefix}}} 0\n".encode(), f"{_UP}{{{prefix}}} 1\n".encode()),
    )


# A gzip block's lines, told apart: hash of the tuple of lines, number of lines, total bytes.
_Fingerprint = tuple[int, int, int]


class _Page(NamedTuple):
    """One scrape's page before it is joined: (family, header, lines) in family order, then the
    server's own metrics."""

    sections: list[tuple[str, bytes, list[bytes]]]
    tail: bytes


class MetricsRenderer:
    """Render the /metrics page, whole or one shard, plain or gzip: the fleet's cached fragments
    plus server internals."""

    def __init__(
        self,
        fleet: Fleet,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        export_of: Callable[[str], Export] | None = None,
        gzip_block_agents: int = GZIP_BLOCK_AGENTS,
    ) -> None:
        self.fleet = fleet
        self.registry = registry
        self.clock = clock
        # With replicas, each agent is shown by one of them only (cluster.Export): Prometheus
        # scrapes them all and counts each agent once.
        self.export_of = export_of
        self.gzip_block_agents = gzip_block_agents
        # One scrape at a time reads and updates the caches below (the HTTP side renders in one
        # thread anyway; tests and benchmarks call in directly).
        self._lock = threading.Lock()
        self._lines: dict[str, _AgentLines] = {}
        # gzip members: per shard (None: the whole page), per (family, block): the block's
        # fingerprint and its member.
        self._members: dict[Shard | None, dict[tuple[str, int], tuple[_Fingerprint, bytes]]] = {}
        self._members_used: dict[Shard | None, float] = {}
        self._pool: ThreadPoolExecutor | None = None

    def render(self, shard: Shard | None = None) -> bytes:
        """Return the exposition text of everything this server knows now (or of one shard)."""
        with self._lock:
            page = self._collect(shard)
        parts: list[bytes] = []
        for _family, header, lines in page.sections:
            parts.append(header)
            parts.extend(lines)
        parts.append(page.tail)
        return b"".join(parts)

    def render_gzip(self, shard: Shard | None = None) -> bytes:
        """Return render(shard) gzip-compressed, as a stream of members."""
        with self._lock:
            page = self._collect(shard)
            return self._gzip(shard, page)

    def scrape(self, shard: Shard | None, compressed: bool) -> bytes:
        """Return the body of one GET /metrics: the page or one shard, plain or gzip."""
        return self.render_gzip(shard) if compressed else self.render(shard)

    def close(self) -> None:
        """Stop the compression threads (idle ones; a scrape in progress finishes first)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # What a scrape holds.

    def _collect(self, shard: Shard | None) -> _Page:
        now = self.clock()
        states = self.fleet.snapshot()
        export_of = self.export_of
        fleet_wide = shard is None or shard.index == 0
        cache = self._lines
        up_lines: list[bytes] = []
        last_lines: list[bytes] = []
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        # Each family's lines, gathered agent by agent (one agent's fragments sit together in
        # memory: measured 3x faster than looking each family up in every agent). Agents with
        # the same families in the same order share one list of appenders, so an agent costs
        # one C-level map, not a Python step per family.
        by_family: dict[str, list[bytes]] = {}
        appenders_of: dict[tuple[str, ...], list[Callable[[bytes], None]]] = {}
        for state in states:
            record = state.record
            lines = cache.get(record.id)
            if lines is None or lines.client != record.client or lines.site != record.site:
                lines = cache[record.id] = _agent_lines(record)
            mine = shard is None or lines.bucket % shard.count == shard.index
            if not (mine or fleet_wide):  # another shard's agent: costs this look only
                continue
            scope = 2 if export_of is None else int(export_of(record.id))
            if not scope:
                continue
            online = record.online(now)
            if fleet_wide:
                counts[(record.client, record.site, "online" if online else "offline")] += 1
            if not mine:
                continue
            up_lines.append(lines.up[online])
            if record.last_seen is not None:
                if lines.last_seen != record.last_seen:
                    lines.last_seen = record.last_seen
                    lines.last_line = (
                        f"{_LAST}{{{lines.prefix}}} {format_value(record.last_seen)}\n".encode()
                    )
                last_lines.append(lines.last_line)
            if scope < 2:  # another replica had its reports: samples here would be stale
                continue
            fragments = state.fragments
            order = tuple(fragments)
            appenders = appenders_of.get(order)
            if appenders is None:
                appenders = [by_family.setdefault(family, []).append for family in order]
                appenders_of[order] = appenders
            deque(map(call, appenders, fragments.values()), maxlen=0)
        if len(cache) > 2 * len(states) + 1000:  # agents removed since: forget their lines
            live = {state.record.id for state in states}
            self._lines = {key: value for key, value in cache.items() if key in live}

        if up_lines:
            by_family[_UP] = up_lines
        if last_lines:
            by_family[_LAST] = last_lines
        if fleet_wide and counts:
            by_family[_AGENTS] = [
                f'{_AGENTS}{{client="{escape_label_value(client)}",'
                f'site="{escape_label_value(site)}",status="{status}"}} {count}\n'.encode()
                for (client, site, status), count in counts.items()
            ]
        sections = [(family, _header(family), by_family[family]) for family in sorted(by_family)]
        tail = generate_latest(self.registry) if fleet_wide else b""
        return _Page(sections, tail)

    # gzip.

    def _gzip(self, shard: Shard | None, page: _Page) -> bytes:
        now = time.monotonic()
        # Members are kept for the whole page and the shards of one N (the one asked last): the
        # listener is open to anyone, and a caller asking of=1..1024 in turn must not make the
        # server hold a compressed copy of the fleet per N.
        count = None if shard is None else shard.count
        idle = [
            key
            for key, used in self._members_used.items()
            if now - used > MEMBERS_IDLE_SECONDS
            or (key is not None and count is not None and key.count != count)
        ]
        for gone in idle:
            self._members.pop(gone, None)
            self._members_used.pop(gone, None)
        previous = self._members.get(shard, {})
        current: dict[tuple[str, int], tuple[_Fingerprint, bytes]] = {}
        members: list[bytes | None] = []
        # Blocks being compressed, oldest first; a few at a time, so that the text of the
        # changed blocks (most of a page) is never all held at once beside its members.
        pending: deque[tuple[int, tuple[str, int], _Fingerprint, Future[bytes]]] = deque()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(GZIP_THREADS, thread_name_prefix="metrics-gzip")
        block = self.gzip_block_agents
        for family, header, lines in page.sections:
            for start in range(0, len(lines), block):
                piece = lines[start : start + block]
                if not start:
                    piece.insert(0, header)
                key = (family, start // block)
                # The block's fingerprint: its lines' hashes (bytes cache theirs, and unchanged
                # agents keep the same objects) and length.
                fingerprint = (hash(tuple(piece)), len(piece), sum(map(len, piece)))
                cached = previous.get(key)
                if cached is not None and cached[0] == fingerprint:
                    current[key] = cached
                    members.append(cached[1])
                    continue
                job = self._pool.submit(_gzip_member, b"".join(piece))
                pending.append((len(members), key, fingerprint, job))
                members.append(None)
                if len(pending) > GZIP_IN_FLIGHT:
                    self._settle(pending.popleft(), members, current)
        while pending:
            self._settle(pending.popleft(), members, current)
        if page.tail:
            members.append(_gzip_member(page.tail))
        self._members[shard] = current
        self._members_used[shard] = now
        body = b"".join(member for member in members if member is not None)
        return body or _gzip_member(b"")  # a shard with no agent: still a gzip body

    @staticmethod
    def _settle(
        done: tuple[int, tuple[str, int], _Fingerprint, Future[bytes]],
        members: list[bytes | None],
        current: dict[tuple[str, int], tuple[_Fingerprint, bytes]],
    ) -> None:
        position, key, fingerprint, job = done
        member = job.result()
        members[position] = member
        current[key] = (fingerprint, member)


def _gzip_member(data: bytes) -> bytes:
    """Compress `data` into one complete gzip member (header, deflate, CRC-32 and size)."""
    return zlib.compress(data, GZIP_LEVEL, wbits=31)
