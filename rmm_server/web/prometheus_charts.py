"""The agent page's 24 h charts from Prometheus (`rmm-server serve --prometheus-url URL`).

Prometheus scrapes the series the server's /metrics exports for each agent; with a URL given,
the charts ask its HTTP API (query_range, a point every 5 minutes over 24 hours) for the same
five series the server's own history keeps (rmm_server/web/history.py), as 5-minute means. When
Prometheus cannot be reached in time or answers an error, the chart says so and shows the
server's own history instead. Every query is an aiohttp request on the server's loop, bounded by
a timeout: nothing blocks the loop, and a slow Prometheus delays only the chart that asked.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from yarl import URL

from rmm_common.errors import ConfigError
from rmm_server.web.history import LOOPBACK as LOOPBACK_INTERFACES
from rmm_server.web.history import SERIES, ChartHistory

STEP_SECONDS = 300
SPAN_SECONDS = 24 * 3600
TIMEOUT_SECONDS = 5.0
# A day of 5-minute points is a few kilobytes a series; anything far bigger is not an answer.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# Traffic that never leaves the host, left out as the server's own history leaves it out (its
# interface names, none with a regex metacharacter, as a PromQL alternation).
LOOPBACK = '"' + "|".join(LOOPBACK_INTERFACES) + '"'
# One expression per chart series over the agent's exported series ({sel} selects the agent).
# Aggregations collapse the copies a series has when several replicas or jobs export it.
QUERIES: dict[str, str] = {
    "cpu_ratio": "avg(avg_over_time(rmm_cpu_usage_ratio{{{sel}}}[5m]))",
    "memory_ratio": "avg(avg_over_time(rmm_memory_usage_ratio{{{sel}}}[5m]))",
    "disk_ratio": "max(avg_over_time(rmm_disk_usage_ratio{{{sel}}}[5m]))",
    "receive_bytes_per_second": (
        "sum(max by (interface) "
        "(rate(rmm_network_receive_bytes_total{{{sel},interface!~" + LOOPBACK + "}}[5m])))"
    ),
    "transmit_bytes_per_second": (
        "sum(max by (interface) "
        "(rate(rmm_network_transmit_bytes_total{{{sel},interface!~" + LOOPBACK + "}}[5m])))"
    ),
}
assert set(QUERIES) == set(SERIES), "a chart series without its Prometheus query"

Columns = dict[str, Any]


class PrometheusError(Exception):
    """Prometheus could not be asked or answered with an error; the message says which."""


def check_url(url: str) -> str:
    """Return a --prometheus-url without its trailing slash; refuse one that is not http(s)."""
    parsed = URL(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"--prometheus-url {url!r}: give Prometheus's base URL, e.g. http://prometheus:9090"
        )
    return str(parsed).rstrip("/")


def agent_selector(agent_id: str) -> str:
    """Return the label matcher selecting one agent's series (the value escaped for PromQL)."""
    escaped = agent_id.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'agent="{escaped}"'


def parse_matrix(answer: Any, expr: str) -> list[tuple[float, float | None]]:
    """Return the (time, value) points of a query_range answer with at most one series."""
    if not isinstance(answer, dict):
        raise PrometheusError(f"Prometheus answered {expr} with something that is not JSON")
    if answer.get("status") != "success":
        raise PrometheusError(
            f"Prometheus refused {expr}: {answer.get('errorType', 'error')}: "
            f"{answer.get('error', 'no reason given')}"
        )
    data = answer.get("data") or {}
    result = data.get("result") or []
    if data.get("resultType") != "matrix" or len(result) > 1:
        raise PrometheusError(f"Prometheus answered {expr} with {len(result)} series, not one")
    points: list[tuple[float, float | None]] = []
    for series in result:
        for stamp, text in series.get("values", []):
            value = float(text)
            points.append((float(stamp), value if math.isfinite(value) else None))
    return points


def merge(series: dict[str, list[tuple[float, float | None]]]) -> Columns:
    """Return points by series as uPlot's columns: one time axis, None where a series has none."""
    times = sorted({stamp for points in series.values() for stamp, _ in points})
    columns: Columns = {"time": times}
    for name in SERIES:
        by_time = dict(series.get(name, []))
        columns[name] = [by_time.get(stamp) for stamp in times]
    return columns


class PrometheusCharts:
    """Ask one Prometheus for an agent's chart series over the last 24 h."""

    def __init__(
        self,
        url: str,
        timeout_seconds: float = TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = check_url(url)
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.clock = clock

    async def query_range(
        self, session: aiohttp.ClientSession, expr: str, start: float, end: float
    ) -> list[tuple[float, float | None]]:
        """Run one range query; raise PrometheusError naming Prometheus's reason or ours."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        params["step"] = str(STEP_SECONDS)
        try:
            async with session.get(self.url + "/api/v1/query_range", params=params) as reply:
                body = await reply.content.read(MAX_ANSWER_BYTES + 1)
                status = reply.status
        except TimeoutError:
            raise PrometheusError(
                f"Prometheus at {self.url} did not answer within {self.timeout.total:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise PrometheusError(f"Prometheus at {self.url} is unreachable: {exc}") from None
        if len(body) > MAX_ANSWER_BYTES:
            raise PrometheusError(f"Prometheus answered {expr} with over 4 MiB")
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusError(
                f"Prometheus at {self.url} answered HTTP {status} that is not its API's JSON "
                "(is --prometheus-url Prometheus's base URL?)"
            ) from None
        return parse_matrix(answer, expr)

    async def columns(self, agent_id: str) -> Columns:
        """Return the agent's five chart series of the last 24 h, a point every 5 minutes."""
        end = self.clock()
        start = end - SPAN_SECONDS
        selector = agent_selector(agent_id)
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            # All asked at once, each awaited to its end before the session closes.
            answers = await asyncio.gather(
                *(
                    self.query_range(session, QUERIES[name].format(sel=selector), start, end)
                    for name in SERIES
                ),
                return_exceptions=True,
            )
        series: dict[str, list[tuple[float, float | None]]] = {}
        for name, answer in zip(SERIES, answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer
            series[name] = answer
        if not any(series.values()):
            # Empty charts would read as an idle host; this is a Prometheus that does not
            # scrape this server (or not yet).
            raise PrometheusError(
                f"Prometheus at {self.url} has no series for agent {agent_id} in the last 24 h "
                "(does it scrape this server's /metrics?)"
            )
        return merge(series)


def history_columns(history: ChartHistory, agent_id: str) -> Columns:
    """Return the server's own history of an agent as columns (blocking: reads the database)."""
    points = history.points(agent_id)
    columns: Columns = {"time": [float(p.bucket) for p in points]}
    for name in SERIES:
        columns[name] = [getattr(p, name) for p in points]
    return columns


async def chart_columns(
    history: ChartHistory, prometheus: PrometheusCharts | None, agent_id: str
) -> Columns:
    """Return the agent's chart columns with where they came from (`source`, `notice`, and
    `fallback` when Prometheus was asked in vain).

    From Prometheus when one is configured and answers; else, saying why, the server's own.
    """
    if prometheus is not None:
        try:
            columns = await prometheus.columns(agent_id)
        except PrometheusError as exc:
            columns = await asyncio.to_thread(history_columns, history, agent_id)
            columns["source"] = "server"
            columns["notice"] = f"{exc}: showing the server's own 5-minute history instead."
            columns["fallback"] = True
            return columns
        columns["source"] = "prometheus"
        columns["notice"] = f"5-minute means from Prometheus at {prometheus.url}."
        columns["fallback"] = False
        return columns
    columns = await asyncio.to_thread(history_columns, history, agent_id)
    columns["source"] = "server"
    columns["notice"] = "5-minute means kept by the server."
    columns["fallback"] = False
    return columns
