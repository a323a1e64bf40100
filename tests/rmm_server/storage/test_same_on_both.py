"""What tends to differ between SQLite and PostgreSQL, checked on both: number and byte
round trips, LIKE and case, text longer than its column, and races between transactions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import cast

import pytest
from sqlalchemy import String, update

from rmm_common.errors import AlreadyExists
from rmm_common.tokens import hash_secret
from rmm_proto import commands_pb2
from rmm_server.audit import ACTION_CHARS, OPERATOR_CHARS, TARGET_CHARS, AuditLog
from rmm_server.storage import (
    AgentRecord,
    EnrollmentTokenRecord,
    Store,
    StoredReport,
    open_store,
    schema,
)
from rmm_server.storage.alerts import AlertQuery, AlertRecord, AlertStore
from rmm_server.storage.audit import AuditStore
from rmm_server.storage.commands import CommandRecord, CommandStore
from rmm_server.storage.operators import OperatorStore
from rmm_server.storage.store import AgentQuery, OperatorRecord

Status = commands_pb2.CommandStatus


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def enroll(store: Store, agent_id: str, hostname: str = "", client: str = "acme") -> None:
    token_id = hash_secret(agent_id)[:32]
    store.create_token(
        EnrollmentTokenRecord(token_id, hash_secret("x"), client, "hq", 1.0, "admin")
    )
    record = AgentRecord(agent_id, "h", client, "hq", 1.0, hostname=hostname or agent_id)
    assert store.enroll_agent(token_id, 2.0, record)


def test_numbers_and_bytes_come_back_exactly(store: Store) -> None:
    enroll(store, "a" * 32)
    received = 1732350000.123456  # microseconds on an epoch timestamp need a double
    body = bytes(range(256)) * 4
    big = 2**62 + 7  # sequences are 64-bit
    store.write_reports(
        [
            StoredReport(
                agent_id="a" * 32,
                sequence=big,
                collected_at=received - 0.5,
                received_at=received,
                body=body,
                host={"hostname": "h"},
                agent_version="1",
                interval_seconds=30,
                summary={"cpu_usage_ratio": 0.1 + 0.2},
                inventory=b"\x00\x01\xfe\xff",
            )
        ]
    )
    agent = store.get_agent("a" * 32)
    assert agent is not None
    assert (agent.last_seen, agent.last_sequence, agent.first_sequence) == (received, big, big)
    assert agent.summary == {"cpu_usage_ratio": 0.1 + 0.2}
    assert store.latest_report_body("a" * 32) == body
    assert type(store.latest_report_body("a" * 32)) is bytes
    assert store.get_inventory("a" * 32) == b"\x00\x01\xfe\xff"
    assert store.report_stats("a" * 32) == (big, big, 1)
    assert dict(store.latest_report_bodies()) == {"a" * 32: body}


def test_find_agents_matches_an_id_prefix_in_any_case_and_wildcards_literally_never_a_host(
    store: Store,
) -> None:
    enroll(store, "ab12" + "0" * 28, hostname="Web01")
    enroll(store, "ab_x" + "0" * 28, hostname="db01")
    enroll(store, "cd%y" + "0" * 28, hostname="ab12-host")
    assert [a.id[:4] for a in store.find_agents("ab12")] == ["ab12"]
    assert [a.id[:4] for a in store.find_agents("AB12")] == ["ab12"]  # ids are lowercase hex
    assert [a.id[:4] for a in store.find_agents("ab_")] == ["ab_x"]  # _ is no wildcard
    assert [a.id[:4] for a in store.find_agents("cd%")] == ["cd%y"]  # nor is %
    assert store.find_agents("a%") == []
    # Never by hostname: an agent may name itself after another's id (ab12-host starts ab12).
    assert store.find_agents("web01") == [] and store.find_agents("Web01") == []
    assert [a.id[:4] for a in store.find_agents("ab12-host")] == []
    names = {name.id[:4]: name for name in store.agent_names()}
    assert (names["ab12"].hostname, names["ab12"].client, names["ab12"].site) == (
        "Web01",
        "acme",
        "hq",
    )
    assert set(names) == {"ab12", "ab_x", "cd%y"} and names["cd%y"].revoked_at is None


def test_agent_lists_page_in_the_same_order(store: Store) -> None:
    for n, host in enumerate(["beta", "Alpha", "alpha", "Zulu", "_x", "10", "9"]):
        enroll(store, f"{n:032d}", hostname=host)
    now = time.time()
    everyone, total = store.list_agents(AgentQuery(limit=100), now)
    pages = [store.list_agents(AgentQuery(limit=3, offset=o), now)[0] for o in (0, 3, 6)]
    assert total == 7
    assert [a.hostname for page in pages for a in page] == [a.hostname for a in everyone]
    # Byte order, as SQLite compares: the same on a PostgreSQL whose collation is not C.
    assert [a.hostname for a in everyone] == ["10", "9", "Alpha", "Zulu", "_x", "alpha", "beta"]


def test_operator_names_are_found_in_any_case_and_taken_once(store: Store) -> None:
    operators = OperatorStore(store)
    store.create_operator(OperatorRecord("o1", "Alice", "tier1", hash_secret("a"), 1.0))
    found = operators.find("alice")
    assert found is not None and found.id == "o1"
    with pytest.raises(AlreadyExists):
        store.create_operator(OperatorRecord("o2", "Alice", "tier1", hash_secret("b"), 1.0))


def test_two_operators_created_with_one_name_at_once_leave_one(store: Store) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def create(n: int) -> None:
        barrier.wait()
        try:
            store.create_operator(OperatorRecord(f"o{n}", "bob", "tier1", hash_secret("b"), 1.0))
            outcomes.append("created")
        except AlreadyExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=create, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created", "exists", "exists", "exists"]


def test_audit_lists_by_an_agent_id_prefix_in_any_case_and_wildcards_literally(
    store: Store,
) -> None:
    log = AuditLog(AuditStore(store))
    for target in ("ab12" + "0" * 28, "ab_x" + "0" * 28, "cd%y" + "0" * 28):
        log.append("admin", "Test", target, {}, "ok")
    assert [e.target[:4] for e in log.list(agent="ab12")] == ["ab12"]
    assert [e.target[:4] for e in log.list(agent="AB12")] == ["ab12"]  # ids are lowercase hex
    assert [e.target[:4] for e in log.list(agent="ab_")] == ["ab_x"]  # _ is no wildcard
    assert [e.target[:4] for e in log.list(agent="cd%")] == ["cd%y"]  # nor is %
    assert log.list(agent="a%") == []


def test_audit_entries_with_long_fields_are_written_and_verify(store: Store) -> None:
    log = AuditLog(AuditStore(store))
    entry = log.append("o" * 300, "Call" * 40, "t" * 1000, {"x": "y" * 5000}, "e" * 5000)
    assert len(entry.target) <= 400 and len(entry.operator) <= 200 and len(entry.action) <= 100
    assert entry.target.startswith("t" * 300)
    result = log.verify()
    assert result.ok, result.problem_text
    columns = schema.audit_log.c
    assert (
        cast(String, columns.operator.type).length,
        cast(String, columns.action.type).length,
        cast(String, columns.target.type).length,
    ) == (OPERATOR_CHARS, ACTION_CHARS, TARGET_CHARS)


def test_alerts_upsert_and_come_back_newest_first(store: Store) -> None:
    alerts = AlertStore(store)

    def alert(alert_id: str, updated_at: float, state: str) -> AlertRecord:
        return AlertRecord(
            id=alert_id,
            fingerprint="f" * 64,
            rule_key="k",
            rule_name="R",
            agent_id="a",
            client="acme",
            site="hq",
            hostname="h",
            series_labels={"b": "2", "a": "1"},
            state=state,
            severity="warning",
            tier="L1",
            started_at=1.0,
            last_active_at=updated_at,
            updated_at=updated_at,
            value=0.1 + 0.2,
        )

    alerts.save([alert("x", 1.5, "pending"), alert("y", 2.5, "firing")])
    alerts.save([alert("x", 3.5, "firing")])  # an update of x, not a second row
    listed = alerts.query(AlertQuery(states=("firing",)))
    assert [(a.id, a.updated_at) for a in listed] == [("x", 3.5), ("y", 2.5)]
    assert listed[0].value == 0.1 + 0.2 and listed[0].series_labels == {"a": "1", "b": "2"}


def test_an_expiring_command_never_overwrites_a_result_that_came_first(store: Store) -> None:
    commands = CommandStore(store)
    record = CommandRecord(
        id="c1",
        run_id="r1",
        agent_id="a1",
        hostname="h",
        operator="admin",
        action="run_script",
        summary="s",
        status=Status.COMMAND_SENT,
        issued_at=1.0,
        expires_at=10.0,
        signed=b"\x00sig",
    )
    commands.insert([record])
    commands.record_results([("c1", Status.COMMAND_SUCCEEDED, b"\x01res", "", 11.0)])
    assert commands.expire(now=20.0) == []
    stored = commands.get("c1")
    assert stored is not None and stored.status == Status.COMMAND_SUCCEEDED
    assert (stored.signed, stored.result) == (b"\x00sig", b"\x01res")


def test_an_admin_revoked_while_another_revocation_is_in_flight_stays(store: Store) -> None:
    """The last-admin rule holds when a revocation runs beside another one not yet committed
    (on PostgreSQL the second UPDATE's count would see the first admin still active)."""
    for admin in ("a1", "a2"):
        store.create_operator(OperatorRecord(admin, admin, "admin", hash_secret(admin), 1.0))
    results: list[bool] = []
    revoker = threading.Thread(
        target=lambda: results.append(OperatorStore(store).revoke("a2", 2.0))
    )
    with store.engine.connect() as conn:
        conn.execute(
            update(schema.operators).where(schema.operators.c.id == "a1").values(revoked_at=1.5)
        )
        revoker.start()
        revoker.join(1.0)  # it waits for the first revocation to commit
        conn.commit()
    revoker.join(30)
    assert results == [False]
    assert [o.id for o in OperatorStore(store).list(include_revoked=False)] == ["a2"]


def test_servers_preparing_one_new_audit_log_at_once_all_succeed(store: Store) -> None:
    """Replicas starting together each make the audit anchor if missing: one row, no error."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def prepare() -> None:
        try:
            barrier.wait()
            assert AuditStore(store).ensure_anchor()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    entry = AuditLog(AuditStore(store)).append("admin", "Test", "", {}, "ok")
    assert entry.seq == 1
