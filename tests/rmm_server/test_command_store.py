"""Commands in the database (SQLite and PostgreSQL): batches of results, final outcomes kept,
batched audit entries."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from rmm_proto import commands_pb2
from rmm_server.audit import AuditLog
from rmm_server.storage import Store, open_store
from rmm_server.storage.audit import AuditStore
from rmm_server.storage.commands import CommandRecord, CommandStore

Status = commands_pb2.CommandStatus


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def record(command_id: str) -> CommandRecord:
    return CommandRecord(
        id=command_id,
        run_id="run",
        agent_id="agent",
        hostname="host",
        operator="alice",
        action="run_script",
        summary="echo",
        status=Status.COMMAND_QUEUED,
        issued_at=1.0,
        expires_at=100.0,
        signed=b"x",
    )


def test_a_batch_of_results_is_stored_and_a_final_outcome_never_changes(store: Store) -> None:
    commands = CommandStore(store)
    commands.insert([record(f"c{i}") for i in range(3)])
    commands.record_results(
        [
            ("c0", Status.COMMAND_SUCCEEDED, b"r0", "", 5.0),
            ("c1", Status.COMMAND_FAILED, b"r1", "exit code 3", 5.0),
            ("c2", Status.COMMAND_RUNNING, b"r2", "", None),
        ]
    )
    # A resend of c0 with another status and a later final result for c2.
    commands.record_results(
        [
            ("c0", Status.COMMAND_REFUSED, b"again", "already ran", 6.0),
            ("c2", Status.COMMAND_SUCCEEDED, b"done", "", 7.0),
        ]
    )
    found = commands.get_many(["c0", "c1", "c2", "missing"])
    assert sorted(found) == ["c0", "c1", "c2"]
    assert (found["c0"].status, found["c0"].result) == (Status.COMMAND_SUCCEEDED, b"r0")
    assert found["c1"].error == "exit code 3"
    assert (found["c2"].status, found["c2"].finished_at) == (Status.COMMAND_SUCCEEDED, 7.0)


def test_expiry_settles_only_undelivered_commands(store: Store) -> None:
    commands = CommandStore(store)
    commands.insert([record("late"), record("sent"), record("done")])
    commands.mark_sent(["sent"], 2.0)
    commands.record_results([("done", Status.COMMAND_SUCCEEDED, b"", "", 3.0)])
    expired = commands.expire(now=200.0)
    assert sorted(r.id for r in expired) == ["late", "sent"]
    assert commands.undelivered("agent", now=50.0) == []


def test_a_batch_of_audit_entries_chains_like_single_ones(store: Store) -> None:
    audit_store = AuditStore(store)
    assert audit_store.ensure_anchor()
    log = AuditLog(audit_store)
    log.append("alice", "AckAlert", "a1", {}, "ok")
    batch = log.append_many(
        [("alice", "command.sent", f"agent{i}", {"i": i}, "queued") for i in range(50)]
    )
    log.append("bob", "AckAlert", "a2", {}, "ok")
    assert [entry.seq for entry in batch] == list(range(2, 52))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(batch))
    result = log.verify()
    assert result.ok, result
