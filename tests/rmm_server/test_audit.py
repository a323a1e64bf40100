"""The hash-chained audit log on real SQLite and PostgreSQL: appends, verify, tampering, archives,
operators."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmm_common.audit_chain import GENESIS_HASH, AuditRecord, ChainChecker
from rmm_common.errors import InvalidArgument, Unauthenticated
from rmm_common.tokens import hash_secret
from rmm_server.audit import AuditBroken, AuditLog
from rmm_server.operators import Operators
from rmm_server.storage import OperatorRecord, Store, open_store
from rmm_server.storage.audit import AuditStore
from rmm_server.storage.operators import OperatorStore
from rmm_server.storage.store import sqlite_url
from tests.databases import tamper


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture
def log(store: Store) -> AuditLog:
    audit = AuditStore(store)
    assert audit.ensure_anchor()
    return AuditLog(audit)


def db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "rmm.sqlite3", isolation_level=None)


def fill(log: AuditLog, count: int) -> list[AuditRecord]:
    return [
        log.append(f"op{i % 3}", "AckAlert", f"alert{i}", {"id": f"alert{i}", "n": i}, "ok")
        for i in range(count)
    ]


def documented_hash(entry: AuditRecord) -> str:
    """The hash as docs/audit.md describes it, written out independently of the module."""
    document = {
        "seq": entry.seq,
        "at": f"{entry.at:.6f}",
        "operator": entry.operator,
        "action": entry.action,
        "target": entry.target,
        "details_json": entry.details_json,
        "outcome": entry.outcome,
        "prev_hash": entry.prev_hash,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def test_entries_chain_from_the_genesis_hash(log: AuditLog) -> None:
    entries = fill(log, 3)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].hash and entries[2].prev_hash == entries[1].hash
    for entry in entries:
        assert entry.hash == documented_hash(entry)
    assert json.loads(entries[0].details_json) == {"id": "alert0", "n": 0}
    assert entries[0].details_json == '{"id":"alert0","n":0}'
    result = log.verify()
    assert result.ok and result.entries == 3 and (result.first_seq, result.last_seq) == (1, 3)
    assert result.last_hash == entries[2].hash


def test_list_filters_newest_last(log: AuditLog) -> None:
    fill(log, 10)
    log.append("alice", "command.sent", "abcdef123456", {}, "ok")
    assert [e.seq for e in log.list(limit=3)] == [9, 10, 11]
    assert [e.seq for e in log.list(operator="op1")] == [2, 5, 8]
    assert [e.target for e in log.list(agent="abcdef")] == ["abcdef123456"]
    assert log.list(agent="abc%") == []  # a LIKE wildcard in the filter matches literally
    assert log.list(since=time.time() + 60) == []


def test_concurrent_appends_from_threads_and_the_event_loop_leave_no_gaps(log: AuditLog) -> None:
    def writer(n: int) -> None:
        for i in range(100):
            log.append(f"thread{n}", "Test", str(i), {}, "ok")

    async def from_loop() -> None:
        await asyncio.gather(
            *(log.append_async("loop", "Test", str(i), {}, "ok") for i in range(100)),
            *(asyncio.to_thread(writer, n) for n in range(4)),
        )

    asyncio.run(from_loop())
    result = log.verify()
    assert result.ok, result.problem_text
    assert result.entries == 500 and result.last_seq == 500


def test_an_edited_outcome_is_found_with_its_seq(log: AuditLog, store: Store) -> None:
    fill(log, 20)
    with tamper(store.engine) as conn:
        conn.execute("UPDATE audit_log SET outcome = 'error: hidden' WHERE seq = 7")
    result = log.verify()
    assert not result.ok and result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (7, "edited")
    assert "seq 7 was edited" in result.problem_text
    assert result.last_seq == 6  # everything before the break checked out


def test_an_edit_with_its_hash_recomputed_breaks_the_next_link(
    log: AuditLog, store: Store
) -> None:
    entries = fill(log, 5)
    forged = AuditRecord(**{**entries[2].to_json(), "outcome": "ok (forged)", "hash": ""})
    with tamper(store.engine) as conn:
        conn.execute(
            "UPDATE audit_log SET outcome = ?, hash = ? WHERE seq = 3",
            (forged.outcome, forged.computed_hash()),
        )
    result = log.verify()
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (4, "unlinked")
    assert "seq 3 was replaced" in result.problem_text


def test_deleted_entries_are_found(log: AuditLog, store: Store) -> None:
    fill(log, 10)
    with tamper(store.engine) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq IN (4, 5)")
    result = log.verify()
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (4, "deleted")
    assert "seqs 4..5 missing" in result.problem_text


def test_deleting_the_newest_entries_is_found_by_the_head(log: AuditLog, store: Store) -> None:
    fill(log, 10)
    with tamper(store.engine) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq > 8")
    result = log.verify()
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (9, "deleted")
    assert "missing at the end" in result.problem_text


def test_reordered_entries_are_found(log: AuditLog, store: Store) -> None:
    fill(log, 10)
    with tamper(store.engine) as conn:  # swap entries 3 and 6 by their seq
        conn.execute("UPDATE audit_log SET seq = -1 WHERE seq = 3")
        conn.execute("UPDATE audit_log SET seq = 3 WHERE seq = 6")
        conn.execute("UPDATE audit_log SET seq = 6 WHERE seq = -1")
    result = log.verify()
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (3, "reordered")
    assert "written as seq 6" in result.problem_text


def test_an_entry_inserted_in_the_middle_is_found(log: AuditLog, store: Store) -> None:
    entries = fill(log, 6)
    # A careful forger: a well-formed entry after seq 3, the rest renumbered, head moved.
    fake = AuditRecord(
        seq=4,
        at=entries[3].at,
        operator="op0",
        action="AckAlert",
        target="x",
        details_json="{}",
        outcome="ok",
        prev_hash=entries[2].hash,
        hash="",
    )
    fake = AuditRecord(**{**fake.to_json(), "hash": fake.computed_hash()})
    with tamper(store.engine) as conn:
        for seq in range(6, 3, -1):
            conn.execute("UPDATE audit_log SET seq = seq + 1 WHERE seq = ?", (seq,))
        conn.execute(
            "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tuple(fake.to_json().values()),
        )
        conn.execute("UPDATE audit_anchor SET head_seq = 7")
    result = log.verify()
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (5, "inserted")
    assert "written as seq 4" in result.problem_text


def test_an_entry_added_beyond_the_head_is_found(log: AuditLog, store: Store) -> None:
    entries = fill(log, 3)
    extra = AuditRecord(
        4, time.time(), "mallory", "AddOperator", "x", "{}", "ok", entries[2].hash, ""
    )
    extra = AuditRecord(**{**extra.to_json(), "hash": extra.computed_hash()})
    with tamper(store.engine) as conn:
        conn.execute(
            "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tuple(extra.to_json().values()),
        )
    result = log.verify()
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (4, "inserted")
    assert "beyond the head" in result.problem_text


def test_archive_keeps_an_anchor_that_verify_starts_from(log: AuditLog) -> None:
    entries = fill(log, 10)
    exported = list(log.export())
    assert exported == entries
    removed, anchor = log.archive(6, entries[5].hash)
    assert removed == 6 and (anchor.archived_through, anchor.anchor_hash) == (6, entries[5].hash)
    log.append("admin", "ArchiveAudit", "", {"through_seq": 6}, "ok")
    result = log.verify()
    assert result.ok, result.problem_text
    assert (result.first_seq, result.last_seq, result.archived_through) == (7, 11, 6)
    # The archived part checks on its own, and the kept part links to its end.
    archive = ChainChecker(0, GENESIS_HASH, "the start of the log")
    assert archive.check_all(exported[:6]) is None
    assert archive.last_hash == result.anchor_hash
    with pytest.raises(InvalidArgument, match="archived already"):
        log.archive(3, entries[2].hash)
    with pytest.raises(InvalidArgument, match="not "):
        log.archive(8, "f" * 64)
    with pytest.raises(InvalidArgument, match="does not exist"):
        log.archive(99, "f" * 64)


def test_appends_during_an_archive_keep_the_chain_whole(log: AuditLog) -> None:
    entries = fill(log, 3000)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                log.append("loop", "Test", "", {}, "ok")
        except BaseException as exc:  # reported below: a failed append fails the test
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        removed, anchor = log.archive(2500, entries[2499].hash)
        result = log.verify()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors
    assert removed == 2500 and anchor.archived_through == 2500
    assert result.ok, result.problem_text
    final = log.verify()
    assert final.ok and final.first_seq == 2501 and final.last_seq > 3000


def test_archive_refuses_a_broken_chain(log: AuditLog, store: Store) -> None:
    entries = fill(log, 5)
    with tamper(store.engine) as conn:
        conn.execute("UPDATE audit_log SET target = 'other' WHERE seq = 2")
    with pytest.raises(AuditBroken, match="seq 2 was edited"):
        log.archive(4, entries[3].hash)
    assert len(list(log.export())) == 5  # nothing was removed


def test_changing_or_deleting_the_anchor_is_found(log: AuditLog, store: Store) -> None:
    entries = fill(log, 5)
    log.archive(2, entries[1].hash)
    with tamper(store.engine) as conn:
        conn.execute("UPDATE audit_anchor SET anchor_hash = ?", ("a" * 64,))
    result = log.verify()
    assert result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (3, "unlinked")
    assert "archive anchor (seq 2)" in result.problem_text
    with tamper(store.engine) as conn:
        conn.execute(
            "UPDATE audit_anchor SET anchor_hash = ?, archived_through = 1", (entries[1].hash,)
        )
    result = log.verify()
    assert result.problem is not None and result.problem.kind == "deleted"
    with tamper(store.engine) as conn:
        conn.execute("DELETE FROM audit_anchor")
    result = log.verify()
    assert result.problem is not None and result.problem.kind == "anchor"
    assert not log.store.ensure_anchor()  # not silently recreated
    with pytest.raises(Exception, match="audit_anchor row is missing"):
        log.append("admin", "X", "", {}, "ok")


def test_verify_is_fast_at_scale(store: Store) -> None:
    """20,000 entries written straight to the table verify in well under the limit."""
    log = AuditLog(AuditStore(store))
    count = 20_000
    rows = []
    prev = GENESIS_HASH
    at = time.time()
    for seq in range(1, count + 1):
        entry = AuditRecord(seq, at, "admin", "AckAlert", f"a{seq}", '{"id":"x"}', "ok", prev, "")
        entry = AuditRecord(**{**entry.to_json(), "hash": entry.computed_hash()})
        rows.append(tuple(entry.to_json().values()))
        prev = entry.hash
    with tamper(store.engine) as conn:
        conn.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute(
            "INSERT INTO audit_anchor (id, archived_through, anchor_hash, archived_at, head_seq, "
            "head_hash) VALUES (1, 0, ?, NULL, ?, ?)",
            (GENESIS_HASH, count, prev),
        )
    started = time.perf_counter()
    result = log.verify()
    elapsed = time.perf_counter() - started
    assert result.ok and result.entries == count
    assert elapsed < 10, f"verify took {elapsed:.1f}s for {count} entries"


def test_old_operators_table_gains_created_by(tmp_path: Path) -> None:
    with db(tmp_path) as conn:  # the table as the first release made it
        conn.execute(
            "CREATE TABLE operators (id VARCHAR(32) PRIMARY KEY, name VARCHAR(200) NOT NULL "
            "UNIQUE, role VARCHAR(32) NOT NULL, token_hash VARCHAR(64) NOT NULL, "
            "created_at FLOAT NOT NULL, revoked_at FLOAT)"
        )
        conn.execute("INSERT INTO operators VALUES ('o1', 'admin', 'admin', 'h', 1.0, NULL)")
    store = open_store(sqlite_url(tmp_path))
    record = store.get_operator("o1")
    assert record is not None and record.created_by == ""
    open_store(sqlite_url(tmp_path)).close()  # a second start finds nothing to add
    store.close()


def operator(op_id: str, role: str) -> OperatorRecord:
    return OperatorRecord(op_id, op_id, role, hash_secret(op_id), time.time())


def test_the_last_active_admin_cannot_be_revoked(store: Store) -> None:
    store.create_operator(operator("a1", "admin"))
    store.create_operator(operator("a2", "admin"))
    table = OperatorStore(store)
    # Two admins revoking each other at once: one wins, one admin stays.
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(table.revoke(i, time.time())))
        for i in ("a1", "a2")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    assert len(table.list(include_revoked=False)) == 1


def test_a_revoked_token_stops_working_at_once(store: Store) -> None:
    operators = Operators(store)
    admin, admin_token = operators.add("root", "admin", "test")
    bob, token = operators.add("bob", "tier1", "root")
    assert operators.authenticate(token).name == "bob"  # now cached
    with pytest.raises(InvalidArgument, match="cannot revoke itself"):
        operators.revoke("root", admin)
    with pytest.raises(Exception, match="exists already"):
        operators.add("BOB", "viewer", "root")
    with pytest.raises(InvalidArgument, match="unknown role"):
        operators.add("carol", "superuser", "root")
    operators.revoke("bob", admin)
    with pytest.raises(Unauthenticated, match="'bob' has been revoked"):
        operators.authenticate(token)
    assert operators.authenticate(admin_token).name == "root"
    assert [o.name for o in operators.list()] == ["root"]
    assert {o.name for o in operators.list(include_revoked=True)} == {"root", "bob"}
    assert bob.created_by == "root"
