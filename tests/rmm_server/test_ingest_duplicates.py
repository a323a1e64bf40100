"""A report under a sequence the server holds: a redelivery is acknowledged, other content is
refused and counted (a reused sequence), never acknowledged as stored. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Iterator

import pytest

from rmm_proto import agent_pb2
from rmm_server.fleet import Fleet
from rmm_server.ingest import ReportIngestor
from rmm_server.reports import decompress
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import AgentRecord, EnrollmentTokenRecord, Store, open_store

_ids = itertools.count(1)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    store.create_token(
        EnrollmentTokenRecord(
            id="tok",
            secret_hash="x" * 64,
            client="acme",
            site="hq",
            created_at=time.time(),
            created_by="test",
        )
    )
    yield store
    store.close()


def new_agent(store: Store, fleet: Fleet) -> AgentRecord:
    record = AgentRecord(
        id=f"agent-{next(_ids)}",
        credential_hash="h",
        client="acme",
        site="hq",
        enrolled_at=time.time(),
        hostname="host",
    )
    assert store.enroll_agent("tok", time.time(), record)
    fleet.add(record)
    return record


def make_report(sequence: int, cpu: float = 0.25) -> agent_pb2.Report:
    report = agent_pb2.Report(
        sequence=sequence, collected_at=time.time(), interval_seconds=30, agent_version="0.1.0"
    )
    report.host.hostname = "host"
    collector = report.collectors.add(name="cpu", ok=True)
    collector.samples.add(name="cpu_usage_ratio", value=cpu)
    # A NaN, as agents send for a value they could not read: a message holding one is never ==
    # to itself, so a redelivery must not be compared with ==.
    collector.samples.add(name="cpu_core_usage_ratio", labels={"core": "0"}, value=math.nan)
    return report


def submit(
    ingestor: ReportIngestor, pairs: list[tuple[AgentRecord, agent_pb2.Report]]
) -> list[agent_pb2.ReportAck]:
    """Submit the reports at once (one batch, as under load) and return their acks."""

    async def run() -> list[agent_pb2.ReportAck]:
        ingestor.start()
        try:
            return list(await asyncio.gather(*(ingestor.submit(a, r) for a, r in pairs)))
        finally:
            await ingestor.stop()

    return asyncio.run(run())


def conflicting(metrics: ServerMetrics) -> float:
    value = metrics.registry.get_sample_value("rmm_server_reports_conflicting_total")
    return float(value or 0.0)


def stored_body(store: Store, agent: AgentRecord, sequence: int) -> agent_pb2.Report:
    body = store.report_body(agent.id, sequence)
    assert body is not None
    return agent_pb2.Report.FromString(decompress(body))


def test_a_redelivery_is_acknowledged_and_not_counted_as_a_conflict(store: Store) -> None:
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    first = make_report(1)
    again = agent_pb2.Report.FromString(first.SerializeToString())  # as the spool resends it
    (ack,) = submit(ReportIngestor(store, fleet, metrics), [(agent, first)])
    assert not ack.rejected
    (ack,) = submit(ReportIngestor(store, fleet, metrics), [(agent, again)])
    assert ack.sequence == 1 and not ack.rejected and ack.next_sequence == 0
    assert metrics.registry.get_sample_value("rmm_server_reports_duplicate_total") == 1.0
    assert conflicting(metrics) == 0.0


def test_a_reused_sequence_with_other_content_is_refused_counted_and_said(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    submit(ReportIngestor(store, fleet, metrics), [(agent, make_report(s)) for s in (1, 2, 3)])
    caplog.set_level(logging.WARNING, logger="rmm_server.ingest")
    reused = make_report(2, cpu=0.9)  # the same number, another report (a restored state dir)
    (ack,) = submit(ReportIngestor(store, fleet, metrics), [(agent, reused)])
    assert ack.sequence == 2
    assert "already stored with other content" in ack.rejected
    assert ack.next_sequence == 4  # the agent resumes above what is stored
    assert conflicting(metrics) == 1.0
    assert f"agent host [{agent.id[:12]}] sent report 2, but the server holds a different" in (
        caplog.text
    )
    assert stored_body(store, agent, 2).collectors[0].samples[0].value == 0.25  # unchanged
    # The count is kept with the agent: in the next stored report's summary, so it outlives a
    # server restart (a new ingestor reads it back).
    live = fleet.get(agent.id)
    assert live is not None and live.summary["conflicting_reports"] == 1
    submit(ReportIngestor(store, fleet, metrics), [(agent, make_report(4))])
    saved = store.get_agent(agent.id)
    assert saved is not None and saved.summary["conflicting_reports"] == 1
    (ack,) = submit(ReportIngestor(store, fleet, metrics), [(agent, make_report(3, cpu=0.7))])
    assert ack.rejected
    live = fleet.get(agent.id)
    assert live is not None and live.summary["conflicting_reports"] == 2


def test_two_reports_under_one_sequence_in_one_batch_store_one_and_refuse_the_other(
    store: Store,
) -> None:
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    one, other = make_report(1, cpu=0.1), make_report(1, cpu=0.2)  # a cloned host, say
    acks = submit(ReportIngestor(store, fleet, metrics), [(agent, one), (agent, other)])
    assert [bool(ack.rejected) for ack in acks].count(True) == 1, acks
    kept = acks.index(next(ack for ack in acks if not ack.rejected))
    assert stored_body(store, agent, 1).collectors[0].samples[0].value == (0.1, 0.2)[kept]
    assert conflicting(metrics) == 1.0
    # The same report twice in one batch (a redelivery racing its first copy) is no conflict.
    twice = make_report(2)
    acks = submit(
        ReportIngestor(store, fleet, metrics),
        [(agent, twice), (agent, agent_pb2.Report.FromString(twice.SerializeToString()))],
    )
    assert not any(ack.rejected for ack in acks)
    assert conflicting(metrics) == 1.0


def test_a_report_below_the_newest_that_was_never_stored_is_stored_not_taken_for_a_duplicate(
    store: Store,
) -> None:
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    submit(ReportIngestor(store, fleet, metrics), [(agent, make_report(5))])
    (ack,) = submit(ReportIngestor(store, fleet, metrics), [(agent, make_report(3))])
    assert not ack.rejected
    assert store.report_stats(agent.id) == (3, 5, 2)
    # Stored, and the agent hears where the server's reports end: an agent whose state was lost
    # below a pruned range (nothing there to compare with) resumes above it at once.
    assert ack.next_sequence == 6
    assert metrics.registry.get_sample_value("rmm_server_reports_duplicate_total") == 0.0
