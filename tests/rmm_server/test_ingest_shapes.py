"""Structure once, values every time: an agent's series set is validated once per change, and a
report of a known shape is still refused for anything validate_report() refuses.

The ingestor is driven directly with real report messages and a real Store (SQLite), as in
test_ingest.py; the shape cache is also compared with validate_report() case by case."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from rmm_common.errors import ConfigError, InvalidArgument
from rmm_proto import agent_pb2
from rmm_server.budgets import AgentCpuBudget
from rmm_server.fleet import Fleet
from rmm_server.ingest import ReportIngestor
from rmm_server.report_shapes import ReportShapes, shape_digest
from rmm_server.reports import MAX_SEQUENCE, ReportSeries, validate_report
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import AgentRecord, EnrollmentTokenRecord, Store, open_store
from rmm_server.storage.store import sqlite_url
from tests.rmm_server.test_ingest import GatedStore, new_agent, sample, until
from tests.rmm_server.test_report_validation import good_report, hostile_reports


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatedStore]:
    real = open_store(sqlite_url(tmp_path))
    real.create_token(
        EnrollmentTokenRecord(
            id="tok",
            secret_hash="x" * 64,
            client="acme",
            site="hq",
            created_at=time.time(),
            created_by="test",
        )
    )
    yield GatedStore(real)
    real.close()


def report(sequence: int, *edits: Callable[[agent_pb2.Report], object]) -> agent_pb2.Report:
    """Return a good report numbered `sequence` with values that move, then `edits` applied."""
    made = good_report()
    made.sequence = sequence
    made.collected_at = 1_700_000_000.0 + sequence
    made.collectors[0].samples[0].value = sequence / 1000.0
    for edit in edits:
        edit(made)
    return made


def new_mountpoint(made: agent_pb2.Report) -> None:
    made.collectors[1].samples.add(name="disk_free_bytes", labels={"mountpoint": "/srv"}, value=7)


def new_series(made: agent_pb2.Report) -> None:
    made.collectors[0].samples.add(name="cpu_steal_ratio", value=0.125)


class Recorder:
    """The after_store hook: what alerting receives of each stored report."""

    def __init__(self) -> None:
        self.series: list[ReportSeries] = []

    async def __call__(
        self,
        record: AgentRecord,
        stored: agent_pb2.Report,
        added: tuple[str, ...],
        removed: tuple[str, ...],
        series: ReportSeries,
    ) -> None:
        self.series.append(series)


def ingest(
    store: Store, reports: Sequence[agent_pb2.Report], **options: object
) -> tuple[list[agent_pb2.ReportAck], ServerMetrics, Recorder, AgentRecord]:
    fleet, metrics, recorder = Fleet(), ServerMetrics(), Recorder()
    agent = new_agent(store, fleet)

    async def run() -> list[agent_pb2.ReportAck]:
        ingestor = ReportIngestor(store, fleet, metrics, after_store=recorder, **options)  # type: ignore[arg-type]
        ingestor.start()
        try:
            return [await ingestor.submit(agent, one) for one in reports]
        finally:
            await ingestor.stop()

    return asyncio.run(run()), metrics, recorder, agent


def shapes_seen(metrics: ServerMetrics) -> tuple[float, float]:
    return (
        sample(metrics, "rmm_server_report_shapes_total", result="hit"),
        sample(metrics, "rmm_server_report_shapes_total", result="miss"),
    )


def test_a_shape_change_mid_stream_is_checked_in_full_and_becomes_the_known_shape(
    store: GatedStore,
) -> None:
    bad_label = report(4, new_mountpoint)
    bad_label.collectors[1].samples[-1].labels["Bad-Name"] = "x"  # a changed shape, refused
    acks, metrics, recorder, agent = ingest(
        store,
        [
            report(1),
            report(2),  # the same shape: values only
            report(3, new_mountpoint),  # a label set changes mid-stream: checked in full
            bad_label,
            report(5, new_mountpoint),  # the shape of report 3 is now the known one
            report(6),  # back to the first shape: known across the cache, still checked
        ],
    )
    assert [ack.rejected for ack in acks] == [
        "",
        "",
        "",
        "report 4, collector 'disks', samples[2]: metric disk_free_bytes label name "
        "'Bad-Name' must match ^[a-z][a-z0-9_]{0,63}$",
        "",
        "",
    ]
    assert shapes_seen(metrics) == (3.0, 3.0)  # misses: 1, 3, 4; hits: 2, 5, 6
    assert store.report_stats(agent.id) == (1, 6, 5)
    # What alerting gets is the report's own samples, whichever path checked it.
    for made, series in zip(
        [report(1), report(2), report(3, new_mountpoint), report(5, new_mountpoint), report(6)],
        recorder.series,
        strict=True,
    ):
        assert repr(series) == repr(validate_report(made))  # repr: NaN != NaN
    disks = dict(((n, labels), v) for n, labels, v in recorder.series[3][1])
    assert disks[("disk_free_bytes", (("mountpoint", "/srv"),))] == 7


def test_a_new_series_is_checked_and_reaches_alerting_with_the_others(
    store: GatedStore,
) -> None:
    clashing = report(4, new_series)
    clashing.collectors[0].samples.add(name="cpu_steal_ratio", value=0.5)  # twice: refused
    acks, metrics, recorder, _agent = ingest(
        store, [report(1), report(2), report(3, new_series), clashing, report(5, new_series)]
    )
    assert [bool(ack.rejected) for ack in acks] == [False, False, False, True, False]
    assert "series cpu_steal_ratio with labels {} appears twice" in acks[3].rejected
    assert shapes_seen(metrics) == (2.0, 3.0)
    latest = {name: value for collector in recorder.series[-1] for name, _l, value in collector}
    assert latest["cpu_steal_ratio"] == 0.125
    assert latest["cpu_usage_ratio"] == 0.005
    assert len(recorder.series[-1][0]) == len(recorder.series[0][0]) + 1


OUT_OF_BOUNDS: dict[str, tuple[Callable[[agent_pb2.Report], object], str]] = {
    "collected_at NaN": (
        lambda r: setattr(r, "collected_at", math.nan),
        "report 3: collected_at nan is not a time",
    ),
    "negative duration": (
        lambda r: setattr(r.collectors[0], "duration_seconds", -1.0),
        "report 3, collector 'cpu': duration_seconds -1.0 is not a duration",
    ),
    "sequence past the bound": (
        lambda r: setattr(r, "sequence", MAX_SEQUENCE + 1),
        f"report {MAX_SEQUENCE + 1}: sequence is over {MAX_SEQUENCE}",
    ),
    "interval too long": (
        lambda r: setattr(r, "interval_seconds", 86_401),
        "report 3: interval_seconds 86401 is over 86400",
    ),
    "info nested too deep": (
        lambda r: setattr(r.collectors[1], "info_json", b"[" * 100 + b"]" * 100),
        "report 3, collector 'disks': info_json nests arrays and objects 100 levels deep",
    ),
    "error too long": (
        lambda r: setattr(r.collectors[1], "error", "e" * 5000),
        "report 3, collector 'disks': error is 5000 characters long; at most 4096",
    ),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_BOUNDS))
def test_a_value_out_of_bounds_in_a_known_shape_is_refused_as_in_full(
    store: GatedStore, case: str
) -> None:
    edit, reason = OUT_OF_BOUNDS[case]
    bad = report(3, edit)
    acks, metrics, _recorder, agent = ingest(store, [report(1), report(2), bad, report(4)])
    assert shape_digest(bad.SerializeToString()) == shape_digest(report(1).SerializeToString())
    assert acks[2].rejected.startswith(reason), acks[2].rejected
    with pytest.raises(InvalidArgument) as full:
        validate_report(bad)
    assert acks[2].rejected == str(full.value)  # the same words as a full check
    assert not acks[3].rejected
    assert shapes_seen(metrics) == (3.0, 1.0)
    assert store.report_stats(agent.id) == (1, 4, 3)


def test_the_cache_refuses_and_accepts_exactly_what_validate_report_does() -> None:
    """Every hostile case of test_report_validation, sent by an agent whose good shape is known
    (and by a second agent after it, so shapes shared across agents are covered too)."""
    shapes = ReportShapes()
    for agent in ("a", "b"):
        shapes.validate(agent, good_report())
        for case, _reason in hostile_reports():
            try:
                expected: object = repr(validate_report(case))
            except InvalidArgument as error:
                expected = str(error)
            try:
                got: object = repr(shapes.validate(agent, case))
            except InvalidArgument as error:
                got = str(error)
            assert got == expected, case
            shapes.validate(agent, good_report())  # back to the known shape
    assert shapes.hits > 0 and shapes.misses > 0


def test_label_order_on_the_wire_is_not_a_new_shape_and_shapes_are_shared_and_bounded() -> None:
    one, other = good_report(), good_report()
    labels = other.collectors[0].samples[1].labels
    labels.clear()
    labels["zone"] = "a"
    labels["core"] = "0"
    first = good_report()
    first.collectors[0].samples[1].labels["zone"] = "a"
    assert shape_digest(first.SerializeToString()) == shape_digest(other.SerializeToString())
    assert shape_digest(one.SerializeToString()) != shape_digest(other.SerializeToString())

    shapes = ReportShapes(max_shapes=2)
    shapes.validate("a", one)
    shapes.validate("b", one)
    assert len(shapes) == 1 and shapes.shape_of("a") is shapes.shape_of("b")  # interned
    for index in range(5):  # an agent with a new shape every report holds one at most
        made = report(index + 1)
        made.collectors[0].samples.add(name=f"made_up_{index}_ratio", value=1)
        shapes.validate("c", made)
    assert len(shapes) == 2
    assert shapes.shape_of("a") is not None  # agents keep theirs whatever the cache evicts
    assert shapes.validate("a", report(9)) is not None and shapes.hits == 2


def test_reports_wait_for_a_full_queue_and_none_is_dropped(store: GatedStore) -> None:
    """A bounded queue with backpressure: submit() waits while the writer is held, nothing is
    refused or lost, and the queue never holds more than its bound."""
    fleet, metrics = Fleet(), ServerMetrics()
    agents = [new_agent(store, fleet) for _ in range(6)]

    async def run() -> list[agent_pb2.ReportAck]:
        ingestor = ReportIngestor(store, fleet, metrics, max_batch=1, max_queued=2)
        ingestor.start()
        store.gate.clear()
        try:
            tasks = [asyncio.ensure_future(ingestor.submit(a, report(1))) for a in agents]
            await until(store.entered.is_set, "the first write at the gate")
            await until(ingestor._queue.full, "the queue filling up")
            await asyncio.sleep(0.05)
            assert ingestor._queue.qsize() == 2  # the rest wait in submit()
            assert not any(task.done() for task in tasks)
            store.gate.set()
            return list(await asyncio.gather(*tasks))
        finally:
            store.gate.set()
            await ingestor.stop()

    acks = asyncio.run(run())
    assert [(ack.sequence, ack.rejected) for ack in acks] == [(1, "")] * 6
    assert all(store.report_stats(a.id) == (1, 1, 1) for a in agents)


def test_an_agent_cpu_budget_is_a_bucket_per_agent() -> None:
    now = [0.0]
    budget = AgentCpuBudget(share=0.1, burst=0.5, clock=lambda: now[0])
    assert budget.delay("a") == 0.0
    budget.charge("a", 0.4)
    assert budget.delay("a") == 0.0  # within the burst
    budget.charge("a", 0.3)
    assert budget.delay("a") == pytest.approx(2.0)  # 0.2 s of debt at 0.1 s a second
    assert budget.delay("b") == 0.0  # another agent pays nothing for it
    now[0] = 1.0
    assert budget.delay("a") == pytest.approx(1.0)
    now[0] = 100.0
    assert budget.delay("a") == 0.0
    budget.charge("a", 0.6)  # the bucket refilled to its burst only
    assert budget.delay("a") == pytest.approx(1.0)
    assert budget.first_in("a", 60) and not budget.first_in("a", 60)
    with pytest.raises(ConfigError, match="over 0"):
        AgentCpuBudget(share=0)
