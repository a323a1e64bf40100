"""Fuzz the server's report path: whatever an agent sends is stored or refused by field name.

Generated reports (every field at and past its limits, NaN and infinities, overlong and empty
names, control characters), random bytes and mutated real reports go through the same steps a
report on the wire takes: protobuf decoding, validate_report, then the ingest pipeline into a
real database (SQLite and PostgreSQL) beside an honest agent's report in the same batch.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_common.errors import InvalidArgument
from rmm_proto import agent_pb2
from rmm_server.exposition import render_agent_fragments
from rmm_server.fleet import Fleet
from rmm_server.ingest import ReportIngestor
from rmm_server.reports import HOST_FIELDS, inventory_hash, validate_report
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import AgentRecord, EnrollmentTokenRecord, Store, open_store
from rmm_server.storage.store import sqlite_url
from tests import databases
from tests.fuzz import FUZZ, examples

# What a refusal must name: the field (or the part of the report) that is wrong.
FIELD_WORDS = (
    "sequence",
    "collected_at",
    "interval_seconds",
    "agent_version",
    "inventory_hash",
    "inventory.hash",
    "host.",
    "collector",
    "metric",
    "label",
    "series",
    "samples",
    "info_json",
    "duration_seconds",
)

GOOD_NAMES = ["cpu_usage_ratio", "disk_free_bytes", "x", "made_up_total", "network_up"]
floats = st.floats(allow_nan=True, allow_infinity=True)
# Text of every kind: short, empty, overlong, control characters, any plane of Unicode.
texts = st.one_of(
    st.text(max_size=20),
    st.text(min_size=60, max_size=300),
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=30),
    st.just(""),
)
metric_names = st.one_of(
    st.sampled_from(GOOD_NAMES),
    st.from_regex(r"\A[a-z][a-z0-9_]{0,140}\Z"),
    texts,
)
label_names = st.one_of(st.sampled_from(["mountpoint", "core", "client", "le"]), texts)
labels = st.dictionaries(label_names, texts, max_size=12)


@st.composite
def collectors(draw: st.DrawFn) -> agent_pb2.CollectorResult:
    result = agent_pb2.CollectorResult(
        name=draw(st.one_of(st.sampled_from(["cpu", "disks", "x.y-z"]), texts)),
        ok=draw(st.booleans()),
        error=draw(st.one_of(st.just(""), texts, st.text(min_size=4090, max_size=4100))),
        duration_seconds=draw(floats),
        info_json=draw(st.one_of(st.just(b""), st.binary(max_size=64), st.just(b'{"a": 1}'))),
    )
    for _ in range(draw(st.integers(0, 8))):
        result.samples.add(name=draw(metric_names), labels=draw(labels), value=draw(floats))
    return result


@st.composite
def reports(draw: st.DrawFn) -> agent_pb2.Report:
    report = agent_pb2.Report(
        sequence=draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(1, 1000))),
        collected_at=draw(st.one_of(floats, st.just(time.time()))),
        interval_seconds=draw(st.integers(0, 2**32 - 1)),
        agent_version=draw(texts),
        inventory_hash=draw(st.one_of(st.just(""), texts)),
        dropped_reports=draw(st.integers(0, 2**64 - 1)),
        self_updatable=draw(st.booleans()),
    )
    for name in HOST_FIELDS:
        setattr(report.host, name, draw(texts))
    report.collectors.extend(draw(st.lists(collectors(), max_size=4)))
    if draw(st.booleans()):
        body = draw(st.one_of(st.binary(max_size=64), st.just(b'{"software": {"packages": []}}')))
        report.inventory.json = body
        report.inventory.hash = draw(st.one_of(st.just(inventory_hash(body)), texts))
    return report


def assert_refusal_names_a_field(report: agent_pb2.Report, error: InvalidArgument) -> None:
    text = str(error)
    assert text.startswith(f"report {report.sequence}") or text.startswith("report sequence 0")
    assert any(word in text for word in FIELD_WORDS), text


def check(report: agent_pb2.Report) -> bool:
    """Validate `report`; True when accepted, False when refused by field name."""
    try:
        validate_report(report)
    except InvalidArgument as error:
        assert_refusal_names_a_field(report, error)
        return False
    # What the server does with an accepted report must work for it too.
    record = AgentRecord(id="a1", credential_hash="", client="acme", site="hq", enrolled_at=0)
    render_agent_fragments(record, report)
    return True


@settings(FUZZ, max_examples=examples(300))
@given(reports())
def test_generated_reports_are_accepted_or_refused_by_field(report: agent_pb2.Report) -> None:
    check(report)


@settings(FUZZ, max_examples=examples(300))
@given(st.binary(max_size=400))
def test_random_bytes_decode_or_fail_as_decode_errors(data: bytes) -> None:
    try:
        report = agent_pb2.Report.FromString(data)
    except DecodeError:
        return
    check(report)


def honest_report(sequence: int) -> agent_pb2.Report:
    report = agent_pb2.Report(
        sequence=sequence, collected_at=time.time(), interval_seconds=30, agent_version="0.1.0"
    )
    report.host.hostname = "honest"
    cpu = report.collectors.add(name="cpu", ok=True, duration_seconds=0.001)
    cpu.samples.add(name="cpu_usage_ratio", value=0.25)
    cpu.samples.add(name="cpu_core_usage_ratio", labels={"core": "0"}, value=math.nan)
    disks = report.collectors.add(name="disks", ok=True)
    disks.samples.add(name="disk_usage_ratio", labels={"mountpoint": "/"}, value=0.5)
    return report


@st.composite
def mutated_reports(draw: st.DrawFn) -> bytes:
    """A real report's bytes with a few bytes flipped, inserted or cut."""
    data = bytearray(honest_report(draw(st.integers(1, 2**40))).SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "cut"]))
        if kind == "flip" and where < len(data):
            data[where] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[where : where + draw(st.integers(1, 8))]
    return bytes(data)


@settings(FUZZ, max_examples=examples(300))
@given(mutated_reports())
def test_mutated_real_reports_decode_or_fail_as_decode_errors(data: bytes) -> None:
    try:
        report = agent_pb2.Report.FromString(data)
    except DecodeError:
        return
    check(report)


def test_invalid_utf8_in_a_string_field_is_a_decode_error() -> None:
    """Bytes no agent can send (protobuf refuses to encode them) fail as DecodeError, which the
    report stream turns into INVALID_ARGUMENT."""
    data = honest_report(1).SerializeToString().replace(b"honest", b"hon\xffst")
    with pytest.raises(DecodeError):
        agent_pb2.Report.FromString(data)


# --- the ingest pipeline into a real database --------------------------------------------

_ids = itertools.count()


@pytest.fixture(scope="module", params=databases.DIALECTS)
def ingest_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """One database for the whole module: every example enrolls agents of its own."""
    if request.param == "sqlite":
        url = sqlite_url(Path(tmp_path_factory.mktemp("fuzz-db")))
    else:
        name: str = request.getfixturevalue("pg_module_database")
        databases.reset_database(name)
        url = databases.database_url(name)
    store = open_store(url)
    store.create_token(
        EnrollmentTokenRecord(
            id="fuzz",
            secret_hash="x" * 64,
            client="acme",
            site="hq",
            created_at=time.time(),
            created_by="fuzz",
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
        hostname="h",
    )
    assert store.enroll_agent("fuzz", time.time(), record)
    fleet.add(record)
    return record


async def submit_together(
    store: Store, fleet: Fleet, pairs: list[tuple[AgentRecord, agent_pb2.Report]]
) -> list[agent_pb2.ReportAck]:
    """Submit the reports at once, so they are written in one batch, as under load."""
    ingestor = ReportIngestor(store, fleet, ServerMetrics())
    ingestor.start()
    try:
        return list(await asyncio.gather(*(ingestor.submit(a, r) for a, r in pairs)))
    finally:
        await ingestor.stop()


@settings(FUZZ, max_examples=examples(40))
@given(reports())
def test_ingest_stores_or_refuses_and_the_honest_agent_in_the_same_batch_is_stored(
    ingest_store: Store, report: agent_pb2.Report
) -> None:
    fleet = Fleet()
    fuzzed, honest = new_agent(ingest_store, fleet), new_agent(ingest_store, fleet)
    acks = asyncio.run(
        submit_together(ingest_store, fleet, [(fuzzed, report), (honest, honest_report(1))])
    )
    fuzzed_ack, honest_ack = acks
    assert not honest_ack.rejected and honest_ack.sequence == 1
    stored = ingest_store.get_agent(honest.id)
    assert stored is not None and stored.last_sequence == 1
    if fuzzed_ack.rejected:
        assert any(word in fuzzed_ack.rejected for word in FIELD_WORDS), fuzzed_ack.rejected
        assert (ingest_store.get_agent(fuzzed.id) or fuzzed).last_sequence == 0
    else:
        again = ingest_store.get_agent(fuzzed.id)
        assert again is not None and again.last_sequence == report.sequence
        assert again.agent_version == report.agent_version


def test_a_nul_in_agent_version_is_refused_before_it_fails_a_postgresql_batch(
    ingest_store: Store,
) -> None:
    """Found by the fuzzing: PostgreSQL refuses NUL in text, and the refused row failed the
    whole batch, the honest agent's report with it (and the agent resent it for ever)."""
    fleet = Fleet()
    fuzzed, honest = new_agent(ingest_store, fleet), new_agent(ingest_store, fleet)
    bad = honest_report(5)
    bad.agent_version = "1.0\x00"
    acks = asyncio.run(
        submit_together(ingest_store, fleet, [(fuzzed, bad), (honest, honest_report(1))])
    )
    assert acks[0].rejected == "report 5: agent_version '1.0\\x00' holds control characters"
    assert not acks[1].rejected


@pytest.mark.parametrize("skew", [-600.0, 600.0])
def test_a_report_from_a_clock_ten_minutes_off_is_stored_in_sequence_order(
    ingest_store: Store, skew: float
) -> None:
    """collected_at is the agent's clock: kept as it came; last seen and every alert window
    run on the server's clock, and sequence numbers, not timestamps, order the reports."""
    fleet = Fleet()
    agent = new_agent(ingest_store, fleet)
    before = time.time()
    first, second = honest_report(1), honest_report(2)
    # The agent's clock moves under it (NTP steps it) between two reports.
    first.collected_at = before + skew
    second.collected_at = before - skew
    for report in (first, second):
        (ack,) = asyncio.run(submit_together(ingest_store, fleet, [(agent, report)]))
        assert not ack.rejected and ack.sequence == report.sequence
        agent = ingest_store.get_agent(agent.id) or agent
    stored = ingest_store.get_agent(agent.id)
    assert stored is not None and stored.last_sequence == 2
    assert stored.last_seen is not None and before <= stored.last_seen <= time.time()
    current = fleet.get(agent.id)
    assert current is not None and current.last_seen == stored.last_seen
    assert current.online(time.time())
