"""The ingestor driven directly: real report messages, a real Store (a SQLite file, and PostgreSQL
where the database decides), no network. Batching, acknowledgement only after the commit, refusals
(invalid reports, budgets, a storage outage), and what reaches the fleet, /metrics and alerting.

Duplicates and reused sequences have their own file (test_ingest_duplicates.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from rmm_common.errors import StorageError
from rmm_proto import agent_pb2
from rmm_server.budgets import AgentByteBudget, BudgetExceeded, DiskReserveReached, FreeSpaceReserve
from rmm_server.fleet import Fleet
from rmm_server.ingest import ReportIngestor
from rmm_server.reports import ReportSeries, compress, decompress, inventory_hash
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import AgentRecord, EnrollmentTokenRecord, Store, StoredReport, open_store
from rmm_server.storage.store import sqlite_url

WAIT = 30.0  # generous: the machine may be loaded; nothing here waits this long when it works
_ids = itertools.count(1)


class GatedStore(Store):
    """A real Store whose report writes can be held at the door, made to fail, and counted."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.batches: list[list[int]] = []  # the sequences of each write_reports call
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a write is waiting at the gate
        self.failures = 0  # the next writes that fail as in a database outage

    def write_reports(self, batch: Sequence[StoredReport]) -> list[StoredReport]:
        self.entered.set()
        if not self.gate.wait(WAIT):
            raise AssertionError("the test never opened the gate")
        self.batches.append([stored.sequence for stored in batch])
        if self.failures:
            self.failures -= 1
            raise StorageError("database unavailable while trying to store reports: gone")
        return super().write_reports(batch)


@pytest.fixture
def store(db_url: str) -> Iterator[GatedStore]:
    real = open_store(db_url)
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


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[GatedStore]:
    """For what does not depend on the database: one dialect is enough."""
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


def make_report(sequence: int, cpu: float = 0.25, **fields: object) -> agent_pb2.Report:
    report = agent_pb2.Report(
        sequence=sequence,
        collected_at=1_700_000_000.0 + sequence,
        interval_seconds=30,
        agent_version="0.1.0",
        **fields,  # type: ignore[arg-type]
    )
    report.host.hostname = "host"
    collector = report.collectors.add(name="cpu", ok=True)
    collector.samples.add(name="cpu_usage_ratio", value=cpu)
    return report


def inventory(*packages: str) -> agent_pb2.Inventory:
    document = {"software": {"packages": [{"name": p, "version": "1"} for p in packages]}}
    raw = json.dumps(document).encode()
    return agent_pb2.Inventory(hash=inventory_hash(raw), json=raw)


def sample(metrics: ServerMetrics, name: str, **labels: str) -> float:
    return float(metrics.registry.get_sample_value(name, labels) or 0.0)


async def until(condition: object, what: str) -> None:
    """Yield to the loop until `condition()` holds (no fixed sleep: a deadline only)."""
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def stored_sequences(store: Store, agent: AgentRecord) -> tuple[int | None, int | None, int]:
    return store.report_stats(agent.id)


# --- the path of a good report --------------------------------------------------------------


def test_a_report_is_acknowledged_only_once_its_transaction_committed(
    store: GatedStore, db_url: str
) -> None:
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    other = open_store(db_url)  # another connection: sees committed rows only

    async def run() -> tuple[bool, bytes | None, agent_pb2.ReportAck]:
        ingestor = ReportIngestor(store, fleet, metrics, clock=lambda: 5000.0)
        ingestor.start()
        store.gate.clear()
        try:
            pending = asyncio.ensure_future(ingestor.submit(agent, make_report(1)))
            await asyncio.to_thread(store.entered.wait, WAIT)
            # The write is under way but not committed: no acknowledgement yet, nothing stored.
            await asyncio.sleep(0)
            early = pending.done()
            assert await asyncio.to_thread(other.report_body, agent.id, 1) is None
            store.gate.set()
            ack = await asyncio.wait_for(pending, WAIT)
            # By the time the agent hears of it, another connection reads it.
            held = await asyncio.to_thread(other.report_body, agent.id, 1)
            return early, held, ack
        finally:
            await ingestor.stop()

    try:
        early, held, ack = asyncio.run(run())
    finally:
        other.close()
    assert not early
    assert held is not None and agent_pb2.Report.FromString(decompress(held)) == make_report(1)
    assert ack.sequence == 1 and not ack.rejected and ack.next_sequence == 0
    saved = store.get_agent(agent.id)
    assert saved is not None and saved.last_sequence == 1 and saved.last_seen == 5000.0
    assert sample(metrics, "rmm_server_reports_received_total") == 1.0


def test_reports_waiting_while_a_write_runs_go_into_the_next_batch_bounded_by_max_batch(
    sqlite_store: GatedStore,
) -> None:
    store = sqlite_store
    fleet, metrics = Fleet(), ServerMetrics()
    agents = [new_agent(store, fleet) for _ in range(5)]

    async def run() -> list[agent_pb2.ReportAck]:
        ingestor = ReportIngestor(store, fleet, metrics, max_batch=2)
        ingestor.start()
        store.gate.clear()
        try:
            first = asyncio.ensure_future(ingestor.submit(agents[0], make_report(1)))
            await asyncio.to_thread(store.entered.wait, WAIT)
            rest = [asyncio.ensure_future(ingestor.submit(a, make_report(1))) for a in agents[1:]]
            await until(lambda: ingestor._queue.qsize() == 4, "four reports queued")
            store.gate.set()
            return list(await asyncio.wait_for(asyncio.gather(first, *rest), WAIT))
        finally:
            await ingestor.stop()

    acks = asyncio.run(run())
    assert [ack.sequence for ack in acks] == [1] * 5 and not any(a.rejected for a in acks)
    # One write for the first, then what queued meanwhile, max_batch at a time.
    assert [len(batch) for batch in store.batches] == [1, 2, 2]
    assert all(store.report_stats(a.id) == (1, 1, 1) for a in agents)


def test_stop_writes_what_is_queued_before_the_writer_ends(sqlite_store: GatedStore) -> None:
    store = sqlite_store
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)

    async def run() -> list[agent_pb2.ReportAck]:
        ingestor = ReportIngestor(store, fleet, metrics)
        ingestor.start()
        pending = [asyncio.ensure_future(ingestor.submit(agent, make_report(s))) for s in (1, 2)]
        await until(lambda: ingestor._queue.qsize() + len(store.batches) >= 1, "a queued report")
        await ingestor.stop()
        return list(await asyncio.wait_for(asyncio.gather(*pending), WAIT))

    acks = asyncio.run(run())
    assert [ack.sequence for ack in acks] == [1, 2]
    assert store.report_stats(agent.id) == (1, 2, 2)


def test_a_stored_report_reaches_the_fleet_metrics_and_alerting(store: GatedStore) -> None:
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    seen: list[tuple[str, int, tuple[str, ...], tuple[str, ...], int]] = []

    async def after_store(
        record: AgentRecord,
        report: agent_pb2.Report,
        added: tuple[str, ...],
        removed: tuple[str, ...],
        series: ReportSeries,
    ) -> None:
        # Called after the commit: the alert path may read the report back.
        assert store.report_body(record.id, report.sequence) is not None
        seen.append((record.id, report.sequence, added, removed, len(series)))

    async def run() -> list[agent_pb2.ReportAck]:
        ingestor = ReportIngestor(
            store, fleet, metrics, clock=lambda: 7000.0, after_store=after_store
        )
        ingestor.start()
        try:
            acks = [await ingestor.submit(agent, make_report(1, inventory=inventory("a", "b")))]
            second = make_report(2, cpu=0.75, inventory=inventory("b", "c"))
            second.host.os_name = "Debian"
            acks.append(await ingestor.submit(agent, second))
            return acks
        finally:
            await ingestor.stop()

    acks = asyncio.run(run())
    assert not any(ack.rejected for ack in acks)
    live = fleet.get(agent.id)
    assert live is not None
    assert (live.last_sequence, live.last_seen, live.interval_seconds) == (2, 7000.0, 30)
    assert live.os_name == "Debian" and live.inventory_hash == inventory("b", "c").hash
    # The first inventory of an agent is not news; the second says what changed.
    assert seen == [(agent.id, 1, (), (), 1), (agent.id, 2, ("c 1",), ("a 1",), 1)]
    (state,) = fleet.snapshot()
    exposition = b"".join(state.fragments.values()).decode()
    assert f'agent="{agent.id}"' in exposition and "0.75" in exposition
    saved = store.get_inventory(agent.id)
    assert saved is not None and b'"c"' in decompress(saved)


def test_a_failing_alert_path_costs_no_acknowledgement(
    sqlite_store: GatedStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = sqlite_store
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)

    async def after_store(*_args: object) -> None:
        raise RuntimeError("the policy engine broke")

    async def run() -> agent_pb2.ReportAck:
        ingestor = ReportIngestor(store, fleet, metrics, after_store=after_store)
        ingestor.start()
        try:
            return await ingestor.submit(agent, make_report(1))
        finally:
            await ingestor.stop()

    ack = asyncio.run(run())
    assert ack.sequence == 1 and not ack.rejected
    assert f"evaluating the report of agent {agent.id} failed" in caplog.text
    assert "the policy engine broke" in caplog.text
    assert store.report_stats(agent.id) == (1, 1, 1)


def test_the_ack_asks_for_a_missing_inventory_and_carries_an_update_offer(
    sqlite_store: GatedStore,
) -> None:
    store = sqlite_store
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    offered: list[int] = []
    held = inventory("a")

    def offer(report: agent_pb2.Report) -> agent_pb2.UpdateOffer | None:
        offered.append(report.sequence)
        return agent_pb2.UpdateOffer(version="9.9.9") if report.self_updatable else None

    async def run() -> list[agent_pb2.ReportAck]:
        ingestor = ReportIngestor(store, fleet, metrics, offer_update=offer)
        ingestor.start()
        try:
            return [
                await ingestor.submit(agent, make_report(1, inventory_hash=held.hash)),
                await ingestor.submit(
                    agent, make_report(2, inventory_hash=held.hash, inventory=held)
                ),
                await ingestor.submit(
                    agent, make_report(3, inventory_hash=held.hash, self_updatable=True)
                ),
            ]
        finally:
            await ingestor.stop()

    first, second, third = asyncio.run(run())
    assert first.need_inventory and not first.HasField("update")
    assert not second.need_inventory  # it came with this one
    assert not third.need_inventory and third.update.version == "9.9.9"
    assert offered == [1, 2, 3]


def test_dropped_reports_are_said_once_per_rise(
    sqlite_store: GatedStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = sqlite_store
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    caplog.set_level(logging.WARNING, logger="rmm_server.ingest")

    async def run() -> None:
        ingestor = ReportIngestor(store, fleet, metrics)
        ingestor.start()
        try:
            for sequence, dropped in ((1, 0), (2, 7), (3, 7), (4, 10)):
                await ingestor.submit(agent, make_report(sequence, dropped_reports=dropped))
        finally:
            await ingestor.stop()

    asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records if "could not deliver" in r.getMessage()]
    assert lines == [
        f"agent host [{agent.id[:12]}] dropped 7 reports it could not deliver, 7 in all: its spool "
        "reached its bound while the server was out of reach (the gap in its sequence numbers "
        "is lost data; raise spool_max_reports/spool_max_bytes on the agent if outages this "
        "long are expected)",
        lines[-1],
    ]
    assert "dropped 3 reports it could not deliver, 10 in all" in lines[1]


# --- refusals -------------------------------------------------------------------------------


def test_an_invalid_report_is_refused_for_good_and_nothing_of_it_is_kept(
    sqlite_store: GatedStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = sqlite_store
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    bad = make_report(4)
    bad.collectors.add(name="cpu", ok=True)  # the same collector twice

    async def run() -> agent_pb2.ReportAck:
        ingestor = ReportIngestor(store, fleet, metrics)
        ingestor.start()
        try:
            return await ingestor.submit(agent, bad)
        finally:
            await ingestor.stop()

    ack = asyncio.run(run())
    assert ack.sequence == 4
    assert ack.rejected == "report 4: collector 'cpu' appears twice"
    assert f"agent {agent.id} sent an invalid report: report 4" in caplog.text
    assert sample(metrics, "rmm_server_reports_rejected_total", reason="invalid") == 1.0
    assert store.batches == []  # never queued
    assert store.report_stats(agent.id) == (None, None, 0)
    live = fleet.get(agent.id)
    assert live is not None and live.last_sequence == 0 and not fleet.snapshot()[0].fragments


def test_an_agent_over_its_byte_budget_is_refused_with_its_report_kept_in_its_spool(
    sqlite_store: GatedStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = sqlite_store
    fleet, metrics = Fleet(), ServerMetrics()
    agent, neighbour = new_agent(store, fleet), new_agent(store, fleet)
    caplog.set_level(logging.WARNING, logger="rmm_server.ingest")
    # Room for exactly the first two reports (each is charged its compressed size).
    limit = sum(len(compress(make_report(s).SerializeToString())) for s in (1, 2))
    budget = AgentByteBudget(limit=limit, window_seconds=3600, clock=lambda: 10.0)

    async def run() -> list[BaseException | agent_pb2.ReportAck]:
        ingestor = ReportIngestor(store, fleet, metrics, byte_budget=budget)
        ingestor.start()
        try:
            outcomes: list[BaseException | agent_pb2.ReportAck] = []
            for who, sequence in ((agent, 1), (agent, 2), (agent, 3), (agent, 4), (neighbour, 1)):
                try:
                    outcomes.append(await ingestor.submit(who, make_report(sequence)))
                except BudgetExceeded as error:
                    outcomes.append(error)
            return outcomes
        finally:
            await ingestor.stop()

    outcomes = asyncio.run(run())
    kinds = [type(o).__name__ for o in outcomes]
    # Two fit, the rest does not; a neighbour has a budget of its own.
    assert kinds == ["ReportAck", "ReportAck", "BudgetExceeded", "BudgetExceeded", "ReportAck"]
    assert store.report_stats(agent.id) == (1, 2, 2)
    assert sample(metrics, "rmm_server_reports_refused_total", budget="agent_bytes") == 2.0
    # Said once a window, naming the agent; the refused reports reached neither store nor fleet.
    said = [r for r in caplog.records if "refusing the reports of" in r.getMessage()]
    assert len(said) == 1 and f"of host [{agent.id[:12]}]:" in said[0].getMessage()
    live = fleet.get(agent.id)
    assert live is not None and live.last_sequence == 2


def test_reports_are_refused_when_the_disk_is_down_to_its_reserve(tmp_path: Path) -> None:
    real = open_store(sqlite_url(tmp_path))
    real.create_token(
        EnrollmentTokenRecord(
            id="tok", secret_hash="x" * 64, client="acme", site="hq", created_at=1.0, created_by="t"
        )
    )
    store = GatedStore(real)
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    free = [10_000_000]

    def statvfs(path: Path) -> os.statvfs_result:
        # f_bavail * f_frsize = free bytes; the other fields are not read
        return os.statvfs_result((4096, 1, 0, 0, free[0], 0, 0, 0, 0, 255))

    now = [0.0]
    reserve = FreeSpaceReserve(tmp_path, 5_000_000, clock=lambda: now[0], statvfs=statvfs)

    async def run() -> list[BaseException | agent_pb2.ReportAck]:
        ingestor = ReportIngestor(store, fleet, metrics, free_space=reserve)
        ingestor.start()
        outcomes: list[BaseException | agent_pb2.ReportAck] = []
        try:
            outcomes.append(await ingestor.submit(agent, make_report(1)))
            free[0] = 4_000_000  # the disk filled up meanwhile
            now[0] += 10.0
            try:
                outcomes.append(await ingestor.submit(agent, make_report(2)))
            except DiskReserveReached as error:
                outcomes.append(error)
            return outcomes
        finally:
            await ingestor.stop()

    try:
        first, second = asyncio.run(run())
    finally:
        real.close()
    assert isinstance(first, agent_pb2.ReportAck) and not first.rejected
    assert isinstance(second, DiskReserveReached)
    assert sample(metrics, "rmm_server_reports_refused_total", budget="free_space") == 1.0
    assert store.report_stats(agent.id) == (1, 1, 1)


def test_a_storage_outage_fails_the_batch_logs_once_and_says_when_writes_work_again(
    store: GatedStore, caplog: pytest.LogCaptureFixture
) -> None:
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    calls: list[int] = []

    async def after_store(_record: AgentRecord, report: agent_pb2.Report, *_rest: object) -> None:
        calls.append(report.sequence)

    caplog.set_level(logging.DEBUG, logger="rmm_server.ingest")
    store.failures = 2

    async def run() -> list[BaseException | agent_pb2.ReportAck]:
        ingestor = ReportIngestor(store, fleet, metrics, after_store=after_store)
        ingestor.start()
        outcomes: list[BaseException | agent_pb2.ReportAck] = []
        try:
            for _ in range(3):  # the agent resends the same report until it is stored
                try:
                    outcomes.append(await ingestor.submit(agent, make_report(1)))
                except StorageError as error:
                    outcomes.append(error)
            return outcomes
        finally:
            await ingestor.stop()

    outcomes = asyncio.run(run())
    assert [type(o).__name__ for o in outcomes] == ["StorageError", "StorageError", "ReportAck"]
    assert calls == [1]  # alerting saw the stored report only, once
    assert sample(metrics, "rmm_server_storage_errors_total") == 2.0
    records = [r for r in caplog.records if r.name == "rmm_server.ingest"]
    failed = [r for r in records if "storing 1 reports failed" in r.getMessage()]
    # One ERROR for the outage, the rest at DEBUG, and a line when it is over.
    assert [r.levelno for r in failed] == [logging.ERROR, logging.DEBUG]
    assert "agents keep them in their spools" in failed[0].getMessage()
    assert [r.getMessage() for r in records if r.levelno == logging.INFO] == [
        "storing reports again"
    ]
    assert store.report_stats(agent.id) == (1, 1, 1)
    live = fleet.get(agent.id)
    assert live is not None and live.last_sequence == 1


def test_a_redelivery_reaches_neither_the_fleet_nor_alerting_again(
    sqlite_store: GatedStore,
) -> None:
    store = sqlite_store
    fleet, metrics = Fleet(), ServerMetrics()
    agent = new_agent(store, fleet)
    evaluated: list[int] = []

    async def after_store(_record: AgentRecord, report: agent_pb2.Report, *_rest: object) -> None:
        evaluated.append(report.sequence)

    now = [100.0]

    async def run() -> list[agent_pb2.ReportAck]:
        ingestor = ReportIngestor(
            store, fleet, metrics, clock=lambda: now[0], after_store=after_store
        )
        ingestor.start()
        try:
            acks = [await ingestor.submit(agent, make_report(1))]
            now[0] = 200.0
            acks.append(await ingestor.submit(agent, make_report(1)))  # the ack was lost
            return acks
        finally:
            await ingestor.stop()

    first, again = asyncio.run(run())
    assert (first.sequence, again.sequence) == (1, 1) and not again.rejected
    assert evaluated == [1]  # an alert is not evaluated twice on one report
    assert len(store.batches) == 1  # nor stored twice
    live = fleet.get(agent.id)
    assert live is not None and live.last_seen == 100.0


def test_a_report_over_its_budget_inside_a_batch_is_refused_alone(
    sqlite_store: GatedStore,
) -> None:
    """Bodies are compressed and budgets charged in the writer thread, per batch: the report
    that does not fit is refused (never written, so its resending later stores it once); the
    others of its batch are written and acknowledged."""
    store = sqlite_store
    fleet, metrics = Fleet(), ServerMetrics()
    agent, neighbour = new_agent(store, fleet), new_agent(store, fleet)
    now = [10.0]
    # Room for exactly three reports of the agent (each is charged its compressed size).
    limit = sum(len(compress(make_report(s).SerializeToString())) for s in (1, 2, 3))
    budget = AgentByteBudget(limit=limit, window_seconds=3600, clock=lambda: now[0])

    async def run() -> list[BaseException | agent_pb2.ReportAck]:
        ingestor = ReportIngestor(store, fleet, metrics, byte_budget=budget)
        ingestor.start()
        try:
            store.gate.clear()
            first = asyncio.ensure_future(ingestor.submit(agent, make_report(1)))
            await asyncio.to_thread(store.entered.wait, WAIT)  # [1] waits at the gate
            rest = [
                asyncio.ensure_future(ingestor.submit(who, make_report(sequence)))
                for who, sequence in ((agent, 2), (agent, 3), (agent, 4), (neighbour, 1))
            ]
            # All four queue behind [1]: the budget is charged when their batch is written.
            deadline = time.monotonic() + WAIT
            while ingestor._queue.qsize() < len(rest) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert ingestor._queue.qsize() == len(rest)
            store.gate.set()
            outcomes = await asyncio.gather(first, *rest, return_exceptions=True)
            now[0] += 3600  # a new window: the refused report, resent, is stored
            outcomes.append(await ingestor.submit(agent, make_report(4)))
            outcomes.append(await ingestor.submit(agent, make_report(4)))  # and only once
            return list(outcomes)
        finally:
            store.gate.set()
            await ingestor.stop()

    outcomes = asyncio.run(run())
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["ReportAck"] * 3 + ["BudgetExceeded"] + ["ReportAck"] * 3
    assert store.batches[:2] == [[1], [2, 3, 1]]  # report 4 never reached the database then
    assert store.report_stats(agent.id) == (1, 4, 4)
    assert store.report_stats(neighbour.id) == (1, 1, 1)
    assert sample(metrics, "rmm_server_reports_refused_total", budget="agent_bytes") == 1.0
    assert sample(metrics, "rmm_server_reports_duplicate_total") == 1.0
    stored = store.report_body(agent.id, 4)
    assert stored is not None
    assert decompress(stored) == make_report(4).SerializeToString()
