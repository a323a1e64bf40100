"""Rate limits: token buckets that keep one caller from crowding out the others.

A bucket holds up to `burst` tokens and gains `per_second` of them continuously; each call takes
one. A caller within its rate is never refused, and one that bursts is refused only once its
bucket is empty, with the time until the next token. Buckets live in memory per server process
and per key (a source address, an enrollment token, an operator, an agent); the least recently
used go first past `max_keys`, which only ever makes a limit more lenient.

Hand-written rather than taken from a library: the well-kept ones (`limits`) count calls in
fixed or moving windows, not rate-and-burst buckets, and keep per-key timestamps or a timer
thread; this is one dict entry per key and about a microsecond a call
(tests/rmm_server/test_ratelimit.py measures it).
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from rmm_common.errors import ConfigError, RmmError

UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*(?::\s*(\d+)\s*)?$")
DEFAULT_MAX_KEYS = 100_000


class RateLimited(RmmError):
    """A caller went over its rate; `retry_after` says when its next call is accepted."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Rate:
    """A sustained rate and the burst allowed above it."""

    per_second: float
    burst: int
    text: str = ""

    @classmethod
    def parse(cls, text: str, option: str) -> Rate | None:
        """Parse COUNT/UNIT[:BURST] (e.g. 10/min:20, 20/s:100), or "off" for no limit."""
        value = text.strip().lower()
        if value in ("off", "none", "0"):
            return None
        match = RATE_RE.match(value)
        unit = UNITS.get(match.group(2)) if match else None
        if match is None or unit is None:
            raise ConfigError(
                f"{option} {text!r} is not a rate: write COUNT/UNIT[:BURST] with UNIT s, min or "
                "h (e.g. 10/min:20 allows 20 at once, then 10 a minute), or off"
            )
        count = float(match.group(1))
        burst = int(match.group(3)) if match.group(3) else max(1, math.ceil(count))
        if count <= 0 or burst < 1:
            raise ConfigError(f"{option} {text!r}: the count and the burst must be at least 1")
        return cls(count / unit, burst, value)

    def __str__(self) -> str:
        return f"{self.text or f'{self.per_second:g}/s'} (bursts of {self.burst})"


class TokenBuckets:
    """One token bucket per key, all with the same rate; safe across threads."""

    def __init__(
        self,
        rate: Rate,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self.clock = clock
        # key -> (tokens, when they were counted); most recently used last.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def _take(self, key: str, into_debt: bool) -> float:
        now = self.clock()
        rate = self.rate
        with self._lock:
            state = self._buckets.get(key)
            if state is None:
                tokens = float(rate.burst)
                if len(self._buckets) >= self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                tokens = min(float(rate.burst), state[0] + (now - state[1]) * rate.per_second)
                self._buckets.move_to_end(key)
            if tokens >= 1.0 or into_debt:
                tokens -= 1.0
                self._buckets[key] = (tokens, now)
                return max(0.0, -tokens / rate.per_second)
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate.per_second

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 when there was one, else the seconds until there is one
        (nothing is taken then)."""
        return self._take(key, into_debt=False)

    def reserve(self, key: str) -> float:
        """Take a token for `key` even if it is not there yet; return how long to wait before
        using it (0.0: at once). For callers that are slowed down, never refused."""
        return self._take(key, into_debt=True)


def peer_address(peer: str) -> str:
    """Return the address part of a gRPC peer string (ipv4:1.2.3.4:5, ipv6:[::1]:5, unix:...)."""
    peer = urllib.parse.unquote(peer or "")
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rpartition(":")[0] if rest.count(":") == 1 or rest.startswith("[") else rest
        return host.strip("[]") or rest
    return kind or "unknown"


def _retry_text(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{math.ceil(seconds)} s"


class RateLimits:
    """The server's limits: enrollments per source address and per token, operator calls per
    operator, and reports per agent (slowed, never refused). A None rate is no limit."""

    def __init__(
        self,
        enroll: Rate | None = None,
        operator: Rate | None = None,
        reports: Rate | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enroll_by_address = TokenBuckets(enroll, clock=clock) if enroll else None
        self.enroll_by_token = TokenBuckets(enroll, clock=clock) if enroll else None
        self.operator = TokenBuckets(operator, clock=clock) if operator else None
        self.reports = TokenBuckets(reports, clock=clock) if reports else None
        self.refused = Counter(
            "rmm_server_rate_limited",
            "Calls refused (enroll_address, enroll_token, operator) or reports slowed (reports) "
            "by a rate limit.",
            ["limit"],
            # Never the process-wide default registry: tests make many of these.
            registry=registry if registry is not None else CollectorRegistry(),
        )

    def check_enrollment(self, address: str, token_id: str) -> None:
        """Raise RateLimited when `address` or the token `token_id` enrolled too often."""
        if self.enroll_by_address is not None:
            wait = self.enroll_by_address.take(address)
            if wait:
                self.refused.labels(limit="enroll_address").inc()
                raise RateLimited(
                    f"too many enrollments from {address}: this server allows "
                    f"{self.enroll_by_address.rate} per source address; retry in "
                    f"{_retry_text(wait)} (server option --enroll-rate)",
                    wait,
                )
        if self.enroll_by_token is not None and token_id:
            wait = self.enroll_by_token.take(token_id)
            if wait:
                self.refused.labels(limit="enroll_token").inc()
                raise RateLimited(
                    f"too many enrollments with token {token_id}: this server allows "
                    f"{self.enroll_by_token.rate} per token; retry in {_retry_text(wait)} "
                    "(server option --enroll-rate)",
                    wait,
                )

    def check_operator(self, name: str) -> None:
        """Raise RateLimited when operator `name` called too often."""
        if self.operator is None:
            return
        wait = self.operator.take(name)
        if wait:
            self.refused.labels(limit="operator").inc()
            raise RateLimited(
                f"operator {name!r} made too many calls: this server allows "
                f"{self.operator.rate} per operator; retry in {_retry_text(wait)} "
                "(server option --operator-rate)",
                wait,
            )

    async def pace_report(self, agent_id: str) -> None:
        """Wait until the agent's next report may be read (gRPC flow control then holds the
        agent back): a backlog is delivered, only slower."""
        if self.reports is None:
            return
        wait = self.reports.reserve(agent_id)
        if wait:
            self.refused.labels(limit="reports").inc()
            await asyncio.sleep(wait)


# The server's defaults (rmm-server serve --enroll-rate, --operator-rate, --report-rate): generous
# enough for a rollout of 2,000 hosts behind one NAT address (and the benchmarks' 1,000 simulated
# agents) and for scripts, tight enough that one runaway caller cannot take the server from the
# others: an enrollment flood is held to 10 a second per address once the burst is spent.
DEFAULT_ENROLL_RATE = "10/s:2000"
DEFAULT_OPERATOR_RATE = "20/s:100"
DEFAULT_REPORT_RATE = "50/s:2000"
ENROLL_RATE = Rate.parse(DEFAULT_ENROLL_RATE, "--enroll-rate")
OPERATOR_RATE = Rate.parse(DEFAULT_OPERATOR_RATE, "--operator-rate")
REPORT_RATE = Rate.parse(DEFAULT_REPORT_RATE, "--report-rate")
