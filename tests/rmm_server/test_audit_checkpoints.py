"""Signed audit checkpoints outside the database, on real SQLite and PostgreSQL: a rollback
(tail deleted, head moved back) and a rewrite with every hash recomputed, both invisible to the
chain alone, are caught; so are edited, removed and foreign checkpoint lines."""

from __future__ import annotations

import base64
import json
import logging
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError

from rmm_common.audit_chain import AuditRecord
from rmm_proto import commands_pb2
from rmm_server.audit import AuditBroken, AuditLog
from rmm_server.audit_checkpoints import (
    CONTEXT,
    CheckpointLog,
    checkpoint_file_name,
    parse_line,
    read_directory,
)
from rmm_server.signing import CommandSigner
from rmm_server.storage import Store, open_store
from rmm_server.storage.audit import AuditStore
from tests.databases import tamper


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture
def signer(tmp_path: Path) -> CommandSigner:
    return CommandSigner.load_or_create(tmp_path)


def make_log(store: Store, signer: CommandSigner, directory: Path, every: int = 1) -> AuditLog:
    audit = AuditLog(AuditStore(store))
    audit.prepare()
    audit.checkpoints = CheckpointLog(directory, signer, replica="r1", every=every)
    audit.checkpoint()
    return audit


@pytest.fixture
def log(store: Store, signer: CommandSigner, tmp_path: Path) -> AuditLog:
    return make_log(store, signer, tmp_path)


def fill(log: AuditLog, count: int) -> list[AuditRecord]:
    return [
        log.append("alice", "AckAlert", f"alert{i}", {"id": f"alert{i}"}, "ok")
        for i in range(count)
    ]


def checkpoint_file(log: AuditLog) -> Path:
    assert log.checkpoints is not None
    return log.checkpoints.path


def forge(entry: AuditRecord, prev_hash: str, **changes: object) -> AuditRecord:
    """`entry` changed and linked to `prev_hash`, its hash recomputed as a careful forger would."""
    changed = AuditRecord(**{**entry.to_json(), **changes, "prev_hash": prev_hash, "hash": ""})
    return AuditRecord(**{**changed.to_json(), "hash": changed.computed_hash()})


def rewrite_from(store: Store, entries: list[AuditRecord], index: int) -> list[AuditRecord]:
    """Rewrite entries[index:] with recomputed hashes and move the head: a consistent chain."""
    rewritten = entries[:index]
    for entry in entries[index:]:
        prev = rewritten[-1].hash if rewritten else entry.prev_hash
        outcome = "error: NOT_FOUND: nothing happened" if entry is entries[index] else entry.outcome
        rewritten.append(forge(entry, prev, outcome=outcome))
    with tamper(store.engine) as conn:
        for entry in rewritten[index:]:
            conn.execute(
                "UPDATE audit_log SET outcome = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (entry.outcome, entry.prev_hash, entry.hash, entry.seq),
            )
        conn.execute("UPDATE audit_anchor SET head_hash = ?", (rewritten[-1].hash,))
    return rewritten


def chain_only(store: Store) -> AuditLog:
    """The same database verified without checkpoints: what the chain alone can tell."""
    return AuditLog(AuditStore(store))


def test_a_clean_chain_verifies_against_its_signed_checkpoints(
    log: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="rmm_server.audit_checkpoints"):
        entries = fill(log, 5)
    result = log.verify()
    assert result.ok, (result.problem_text, result.checkpoint_problems)
    assert result.checkpoints == 6  # the start (seq 0) and one per append (every=1)
    assert result.checkpoints_checked == 6
    assert result.newest_checkpoint is not None
    assert (result.newest_checkpoint.seq, result.newest_checkpoint.hash) == (5, entries[-1].hash)
    path = checkpoint_file(log)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [0, 1, 2, 3, 4, 5]
    # Every checkpoint is also one log line holding the whole signed line (journald's copy).
    logged = [r.getMessage() for r in caplog.records if "audit checkpoint" in r.getMessage()]
    assert [message.split(" ", 2)[2] for message in logged] == lines[1:]
    # The log's copy verifies as the file does, prefixes and other lines and all.
    journal = ["Dec 07 rmm-server[12]: unrelated line"] + [
        f"Dec 07 rmm-server[12]: {m}" for m in logged
    ]
    assert log.verify(given=[("journal", journal)]).ok


def test_truncated_and_re_anchored_chain_is_caught(log: AuditLog, store: Store) -> None:
    entries = fill(log, 10)
    with tamper(store.engine) as conn:  # delete the tail and move the head back onto seq 7
        conn.execute("DELETE FROM audit_log WHERE seq > 7")
        conn.execute("UPDATE audit_anchor SET head_seq = 7, head_hash = ?", (entries[6].hash,))
    assert chain_only(store).verify().ok  # the chain alone sees nothing wrong
    result = log.verify()
    assert not result.ok and result.problem is None
    assert len(result.checkpoint_problems) == 1, result.checkpoint_problems
    problem = result.checkpoint_problems[0]
    assert f"{checkpoint_file(log)}:11: rolled back" in problem
    assert "says the log reached seq 10" in problem and "the database's head is seq 7" in problem
    assert "seqs 8..10 were deleted" in problem


def test_a_rollback_written_over_by_new_entries_is_caught_as_a_rewrite(
    log: AuditLog, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    entries = fill(log, 10)
    with tamper(store.engine) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq > 7")
        conn.execute("UPDATE audit_anchor SET head_seq = 7, head_hash = ?", (entries[6].hash,))
    # The server, unaware, goes on writing: seqs 8.. again, past the old head.
    with caplog.at_level(logging.ERROR):
        fill(log, 5)
    assert "AUDIT CHAIN ROLLED BACK OR REWRITTEN: the head is now seq 8" in caplog.text
    assert chain_only(store).verify().ok
    result = log.verify()
    assert not result.ok
    first = result.checkpoint_problems[0]
    assert "rewritten: entry seq 8 has hash" in first
    assert "the newest checkpoint that still matches is at seq 7" in first


def test_a_rewrite_from_row_n_with_recomputed_hashes_is_caught(log: AuditLog, store: Store) -> None:
    entries = fill(log, 10)
    rewrite_from(store, entries, 3)  # seq 4 on
    assert chain_only(store).verify().ok
    result = log.verify()
    assert not result.ok and result.problem is None
    first = result.checkpoint_problems[0]
    assert f"{checkpoint_file(log)}:5: rewritten: entry seq 4 has hash" in first
    assert f"signed {entries[3].hash[:16]}..." in first
    assert (
        "the newest checkpoint that still matches is at seq 3, so the rewrite starts after it"
        in first
    )
    assert len(result.checkpoint_problems) == 7  # seqs 4..10, each named


def test_a_rewrite_since_the_last_checkpoint_is_caught_by_a_sparse_one(
    store: Store, signer: CommandSigner, tmp_path: Path
) -> None:
    log = make_log(store, signer, tmp_path, every=4)
    entries = fill(log, 10)  # checkpoints at 0, 4, 8
    assert [json.loads(x)["seq"] for x in checkpoint_file(log).read_text().splitlines()] == [
        0,
        4,
        8,
    ]
    rewrite_from(store, entries, 5)  # seq 6 on: before the checkpoint at 8, after the one at 4
    result = log.verify()
    assert not result.ok
    assert "entry seq 8 has hash" in result.checkpoint_problems[0]
    assert "still matches is at seq 4" in result.checkpoint_problems[0]


def test_edited_removed_and_foreign_checkpoint_lines_are_caught(
    log: AuditLog, tmp_path: Path
) -> None:
    fill(log, 4)
    path = checkpoint_file(log)
    lines = path.read_text().splitlines()
    # Edited: a checkpoint moved onto a made-up hash, its signature left as it was.
    edited = json.loads(lines[2])
    edited["hash"] = "f" * 64
    path.write_text("\n".join([*lines[:2], json.dumps(edited), *lines[3:]]) + "\n")
    result = log.verify()
    assert not result.ok
    assert result.checkpoint_problems == (
        f"{path}:3: the signature does not match (seq 2): the line was edited or forged; the "
        "server's own lines are never changed once written",
    )
    # Removed: a line taken out of the middle (what is left is each correctly signed).
    path.write_text("\n".join([*lines[:2], *lines[3:]]) + "\n")
    result = log.verify()
    assert not result.ok
    assert len(result.checkpoint_problems) == 1
    assert (
        f"{path}:3: checkpoint seq 3 does not follow the line before it"
        in result.checkpoint_problems[0]
    )
    # Foreign: signed by another key (another server's file, or a forger's own key).
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "other").mkdir()
    other = CommandSigner.load_or_create(tmp_path / "other")
    foreign = CheckpointLog(tmp_path / "other", other, replica="r1")
    forged = foreign.checkpoint(99, "a" * 64, 0, "0" * 64)
    assert forged is not None
    result = log.verify(given=[("copied.log", [forged.line()])])
    assert not result.ok
    assert result.checkpoint_problems[0].startswith("copied.log:1: signed by key ")
    assert "not this server's" in result.checkpoint_problems[0]
    # Garbage that claims to be one.
    result = log.verify(given=[("copied.log", ['{"sig": "x"}'])])
    assert result.checkpoint_problems[0].startswith("copied.log:1: not a checkpoint (missing v, ")
    assert log.verify().ok  # the file put back


def test_archive_works_with_checkpoints_and_its_anchor_is_pinned(
    log: AuditLog, store: Store
) -> None:
    entries = fill(log, 10)
    removed, anchor = log.archive(6, entries[5].hash)
    assert removed == 6 and anchor.archived_through == 6
    last = json.loads(checkpoint_file(log).read_text().splitlines()[-1])
    assert (last["seq"], last["archived_through"], last["anchor_hash"]) == (10, 6, entries[5].hash)
    archive_entry(log, 6, entries[5].hash)
    result = log.verify()
    assert result.ok, result.checkpoint_problems
    assert [pin.seq for pin in result.archived_pins] == [0, 1, 2, 3, 4, 5]
    fill(log, 2)
    assert log.verify().ok
    # Putting archived entries back and moving the anchor back (an old backup, say) shows.
    with tamper(store.engine) as conn:
        conn.executemany(
            "INSERT INTO audit_log (seq, at, operator, action, target, details_json, outcome, "
            "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [tuple(entry.to_json().values()) for entry in entries[:6]],
        )
        conn.execute("UPDATE audit_anchor SET archived_through = 0, anchor_hash = ?", ("0" * 64,))
    assert chain_only(store).verify().ok
    result = log.verify()
    assert not result.ok
    assert any(
        "says entries through seq 6 had been archived, but the database's archive anchor is seq 0"
        in problem
        for problem in result.checkpoint_problems
    ), result.checkpoint_problems


def archive_entry(log: AuditLog, through_seq: int, through_hash: str) -> None:
    """The entry the guard writes after an ArchiveAudit call (uint64 fields are JSON strings)."""
    details = {"through_seq": str(through_seq), "through_hash": through_hash}
    log.append("admin", "ArchiveAudit", "", details, "ok")


def test_old_entries_deleted_and_the_anchor_moved_on_are_caught(
    log: AuditLog, store: Store
) -> None:
    entries = fill(log, 10)
    assert log.archive(3, entries[2].hash)[0] == 3  # a real archive, recorded as the guard does
    archive_entry(log, 3, entries[2].hash)
    assert log.verify().ok
    # Someone with the database "archives" seqs 4..6 without the server: no file, no entry.
    with tamper(store.engine) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq <= 6")
        conn.execute(
            "UPDATE audit_anchor SET archived_through = 6, anchor_hash = ?", (entries[5].hash,)
        )
    assert chain_only(store).verify().ok
    log.checkpoint()  # the timer signs the anchor it finds: that alone cannot tell
    result = log.verify()
    assert not result.ok
    assert result.checkpoint_problems == (
        "the database is archived through seq 6, but no ArchiveAudit call through seq 6 is "
        "recorded in the log: the oldest entries were deleted and the anchor moved outside the "
        "server (or that call's audit entry could not be written: look for AUDIT ENTRY NOT "
        "WRITTEN in the server's log)",
    )


def test_archive_refuses_a_rewritten_chain(log: AuditLog, store: Store) -> None:
    entries = fill(log, 10)
    rewritten = rewrite_from(store, entries, 2)
    with pytest.raises(AuditBroken, match="rewritten: entry seq 3 has hash"):
        log.archive(6, rewritten[5].hash)
    assert chain_only(store).verify().entries == 10  # nothing was removed


def test_checkpoints_continue_their_file_across_restarts(
    store: Store, signer: CommandSigner, tmp_path: Path
) -> None:
    log = make_log(store, signer, tmp_path)
    fill(log, 3)
    again = make_log(store, signer, tmp_path)  # a restart: a new writer on the same file
    fill(again, 2)
    lines = checkpoint_file(again).read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [0, 1, 2, 3, 4, 5]  # start: unchanged
    assert again.verify().ok
    # A line cut short by a crash is ended, reported, and the chain of lines goes on after it.
    with checkpoint_file(again).open("a") as handle:
        handle.write(lines[-1][:-20])
    third = make_log(store, signer, tmp_path)
    fill(third, 1)
    result = third.verify()
    assert len(result.checkpoint_problems) == 1, result.checkpoint_problems
    assert result.checkpoint_problems[0].startswith(
        f"{checkpoint_file(third)}:7: not a checkpoint (not JSON: "
    )


def test_a_checkpoint_signature_cannot_pass_for_a_command(log: AuditLog) -> None:
    fill(log, 1)
    checkpoint = parse_line(checkpoint_file(log).read_text().splitlines()[-1], "x")
    signed = CONTEXT + checkpoint.payload()
    with pytest.raises(DecodeError):
        commands_pb2.Command.FromString(signed)
    assert base64.b64decode(checkpoint.sig)  # and it is a real signature over those bytes


def test_each_replica_signs_into_its_own_file_and_verify_reads_them_all(
    store: Store, signer: CommandSigner, tmp_path: Path
) -> None:
    assert checkpoint_file_name(None) == "audit-checkpoints.log"
    assert checkpoint_file_name("host-a:50051") == "audit-checkpoints.host-a_50051.log"
    # Two replicas on one volume, one database: each file is one writer's chain of lines.
    first = AuditLog(AuditStore(store))
    first.prepare()
    first.checkpoints = CheckpointLog(
        tmp_path, signer, replica="a:1", file_name=checkpoint_file_name("a:1")
    )
    second = AuditLog(AuditStore(store))
    second.checkpoints = CheckpointLog(
        tmp_path, signer, replica="b:1", file_name=checkpoint_file_name("b:1"), every=1
    )
    fill(first, 3)
    entries = fill(second, 2)
    first.checkpoint()
    result = first.verify()
    assert result.ok, result.checkpoint_problems
    assert sorted(Path(source).name for source in result.checkpoint_sources) == [
        "audit-checkpoints.a_1.log",
        "audit-checkpoints.b_1.log",
    ]
    assert result.newest_checkpoint is not None
    assert result.newest_checkpoint.hash == entries[-1].hash
    with tamper(store.engine) as conn:  # roll back what the second replica wrote
        conn.execute("DELETE FROM audit_log WHERE seq > 3")
        conn.execute("UPDATE audit_anchor SET head_seq = 3, head_hash = ?", (entries[0].prev_hash,))
    problems = first.verify().checkpoint_problems
    assert len(problems) == 1 and "seqs 4..5 were deleted" in problems[0], problems


def test_timer_checkpoints_racing_appends_never_look_like_a_rollback(
    store: Store, signer: CommandSigner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = make_log(store, signer, tmp_path, every=3)
    stop = threading.Event()

    def timer() -> None:  # the scheduler's job, as often as it can run
        while not stop.is_set():
            log.checkpoint()

    thread = threading.Thread(target=timer)
    with caplog.at_level(logging.ERROR):
        thread.start()
        try:
            fill(log, 150)
        finally:
            stop.set()
            thread.join()
    assert "ROLLED BACK" not in caplog.text
    seqs = [json.loads(line)["seq"] for line in checkpoint_file(log).read_text().splitlines()]
    assert seqs == sorted(seqs) and seqs[-1] == 150
    assert log.verify().ok


def test_a_chain_with_entries_and_no_checkpoint_file_is_not_trusted(
    log: AuditLog, store: Store, signer: CommandSigner, tmp_path: Path
) -> None:
    # Truncated and re-anchored, with the checkpoint file deleted too: the chain alone is
    # consistent, and an empty directory must not read as "nothing to check".
    entries = fill(log, 12)
    with tamper(store.engine) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq > 6")
        conn.execute("UPDATE audit_anchor SET head_seq = 6, head_hash = ?", (entries[5].hash,))
    checkpoint_file(log).unlink()
    found = read_directory(tmp_path, signer.public_key)
    result = AuditLog(AuditStore(store)).verify(found=found)
    assert not result.ok
    assert any(
        "no signed checkpoint was found" in problem for problem in result.checkpoint_problems
    )


def test_a_checkpoint_file_put_back_as_an_older_copy_is_caught(
    store: Store, signer: CommandSigner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Copy the file, let entries and checkpoints go on, put the old copy back: every line left
    is authentic and in order, yet the database's anchor names a newer line it lacks."""
    log = make_log(store, signer, tmp_path)
    fill(log, 3)
    path = checkpoint_file(log)
    old_copy = path.read_bytes()
    fill(log, 4)
    assert log.verify().ok
    path.write_bytes(old_copy)
    # As `rmm-server audit verify` reads it, with no server running.
    found = read_directory(tmp_path, signer.public_key)
    assert not found.problems  # the old copy alone is flawless
    result = chain_only(store).verify(found=found)
    assert not result.ok and result.problem is None
    (problem,) = result.checkpoint_problems
    assert problem.startswith("rolled back: the database's anchor records that checkpoint seq 7")
    assert "was written to the checkpoint file of replica 'r1', but the files lack it" in problem
    assert "its newest line is seq 3 of " in problem and f"({path}:4)" in problem
    # A server starting on the old copy says so, and continues its lines from the recorded
    # one: the gap stays in the file after the database has recorded newer lines.
    with caplog.at_level(logging.ERROR, logger="rmm_server.audit_checkpoints"):
        restarted = make_log(store, signer, tmp_path)
    (said,) = [r.getMessage() for r in caplog.records if "ROLLED BACK" in r.getMessage()]
    assert said.startswith("AUDIT CHECKPOINT FILE ROLLED BACK: the database records checkpoint")
    assert "seq 7" in said and "its last line is seq 3" in said
    fill(restarted, 2)
    for verifier, found_now in (
        (restarted, None),
        (chain_only(store), read_directory(tmp_path, signer.public_key)),
    ):
        again = verifier.verify(found=found_now)
        assert not again.ok
        assert any(
            f"{path}:5: checkpoint seq 7 does not follow the line before it" in text
            and "replaced by an older copy" in text
            for text in again.checkpoint_problems
        ), again.checkpoint_problems


def test_each_replicas_record_is_looked_for_only_where_its_file_is(
    store: Store, signer: CommandSigner, tmp_path: Path
) -> None:
    """Replicas with data directories of their own: one's verify cannot see the other's file,
    and the database's record of the other's newest line is no problem to it."""
    mine, theirs = tmp_path / "a", tmp_path / "b"
    mine.mkdir()
    theirs.mkdir()
    log = make_log(store, signer, mine)
    other = AuditLog(AuditStore(store))
    other.checkpoints = CheckpointLog(theirs, signer, replica="r2", every=1)
    fill(log, 2)
    fill(other, 2)  # the anchor now records r2's newest line
    assert log.verify().ok
    (theirs / checkpoint_file_name(None)).unlink()
    assert log.verify().ok  # r2's file was never among what r1 reads
