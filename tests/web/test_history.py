"""The charts' history on both databases: 5-minute means, network rates from counters, closed
buckets written by a flush, points older than 24 h pruned, a bucket written twice kept once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from rmm_proto import agent_pb2, common_pb2
from rmm_server.reports import report_series
from rmm_server.storage import AgentRecord, Store, open_store
from rmm_server.storage.agent_history import AgentHistoryStore, HistoryPoint
from rmm_server.web.history import BUCKET_SECONDS, KEEP_SECONDS, ChartHistory

START = 1_800_000_000 // BUCKET_SECONDS * BUCKET_SECONDS  # a bucket's start


class Clock:
    def __init__(self) -> None:
        self.now = float(START)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


def agent(cpu: float, memory: float, disk: float) -> AgentRecord:
    return AgentRecord(
        id="a1",
        credential_hash="x",
        client="acme",
        site="hq",
        enrolled_at=0.0,
        summary={"cpu_usage_ratio": cpu, "memory_used_ratio": memory, "disk_used_ratio_max": disk},
    )


def report(received: float, sent: float) -> agent_pb2.Report:
    def sample(name: str, interface: str, value: float) -> common_pb2.Sample:
        return common_pb2.Sample(name=name, labels={"interface": interface}, value=value)

    samples = [
        sample("network_receive_bytes_total", "eth0", received),
        sample("network_transmit_bytes_total", "eth0", sent),
        # Loopback traffic never leaves the host: not in the rate.
        sample("network_receive_bytes_total", "lo", received * 7),
    ]
    return agent_pb2.Report(
        collectors=[agent_pb2.CollectorResult(name="network", ok=True, samples=samples)]
    )


def test_means_rates_flush_and_prune(store: Store) -> None:
    clock = Clock()
    history = ChartHistory(AgentHistoryStore(store), clock)
    history.observe(agent(0.2, 0.5, 0.7), report(1000, 100), clock.now)
    clock.now += 60
    history.observe(agent(0.4, 0.5, 0.7), report(7000, 700), clock.now)  # 100 B/s in, 10 out
    # Open buckets are shown before they are stored.
    [point] = history.points("a1")
    assert point.bucket == START and point.cpu_ratio == pytest.approx(0.3)
    assert point.receive_bytes_per_second == pytest.approx(100.0)
    assert point.transmit_bytes_per_second == pytest.approx(10.0)
    assert history.flush() == 0  # the bucket is still open
    clock.now = START + BUCKET_SECONDS + 5
    history.observe(agent(0.9, 0.6, 0.7), report(7000, 700), clock.now)
    assert history.flush() == 1
    stored = AgentHistoryStore(store).points("a1", 0)
    assert [p.bucket for p in stored] == [START]
    assert stored[0].memory_ratio == pytest.approx(0.5) and stored[0].disk_ratio == pytest.approx(
        0.7
    )
    assert [p.bucket for p in history.points("a1")] == [START, START + BUCKET_SECONDS]
    # A day later the first bucket is pruned; the second closes (no report since) and is written.
    clock.now = START + KEEP_SECONDS + BUCKET_SECONDS
    assert history.flush() == 1
    assert [p.bucket for p in AgentHistoryStore(store).points("a1", 0)] == [START + BUCKET_SECONDS]


def test_the_ingest_hook_reads_rates_from_the_validated_series(store: Store) -> None:
    # Ingest hands the hook the series it validated: the rates come from them (the report's
    # protobuf map is not read again), and the next hook gets the same arguments.
    clock = Clock()
    history = ChartHistory(AgentHistoryStore(store), clock)
    passed: list[tuple[object, ...]] = []

    async def then(*args: object) -> None:
        passed.append(args)

    hook = history.after_store(then)
    for received, sent in ((1000.0, 100.0), (7000.0, 700.0)):
        series = report_series(report(received, sent))
        unread = report(0.0, 0.0)  # what the hook must not take the counters from

        async def call(unread: agent_pb2.Report = unread, series: object = series) -> None:
            await hook(agent(0.2, 0.5, 0.7), unread, ("pkg",), (), series)

        asyncio.run(call())
        assert passed[-1][1] is unread and passed[-1][2:] == (("pkg",), (), series)
        clock.now += 60
    [point] = history.points("a1")
    assert point.receive_bytes_per_second == pytest.approx(100.0)
    assert point.transmit_bytes_per_second == pytest.approx(10.0)


def test_a_counter_reset_gives_no_rate(store: Store) -> None:
    clock = Clock()
    history = ChartHistory(AgentHistoryStore(store), clock)
    history.observe(agent(0.1, 0.1, 0.1), report(5000, 5000), clock.now)
    clock.now += 30
    history.observe(agent(0.1, 0.1, 0.1), report(10, 10), clock.now)  # rebooted
    [point] = history.points("a1")
    assert point.receive_bytes_per_second is None


def test_a_bucket_written_twice_is_one_row(store: Store) -> None:
    # Another replica took the agent over mid-bucket and wrote the same bucket: the last wins.
    table = AgentHistoryStore(store)
    first = HistoryPoint("a1", START, 0.1, 0.2, 0.3, None, None)
    table.write([first])
    table.write([HistoryPoint("a1", START, 0.5, 0.2, 0.3, 1.0, 2.0)])
    [point] = table.points("a1", 0)
    assert point.cpu_ratio == pytest.approx(0.5) and point.transmit_bytes_per_second == 2.0
