"""`rmm audit verify` against a real server's signed checkpoints: a rollback (tail deleted, head
moved back) and a rewrite with every hash recomputed are caught, though the chain alone is
consistent; so is an edited checkpoint file; archiving still works."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from rmm_common.audit_chain import AuditRecord
from tests.helpers import BIN, ServerProcess, free_port, rmm, wait_for

COLUMNS = "seq, at, operator, action, target, details_json, outcome, prev_hash, hash"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that signs a checkpoint after every entry (and never on its timer, so what is
    signed depends only on what each test does); each test puts the database back."""
    tmp = tmp_path_factory.mktemp("checkpoints")
    process = ServerProcess(
        data_dir=tmp / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp / "server.log",
        extra_args=["--audit-checkpoint-every", "1", "--audit-checkpoint-interval", "1h"],
    )
    process.start()
    try:
        for n in range(12):  # twelve audited calls: entries 1..12, a checkpoint after each
            rmm(process, "tokens", "create", "--client", f"c{n}", "--site", "hq")
        yield process
    finally:
        process.stop()


@contextmanager
def database(server: ServerProcess) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(server.data_dir / "rmm.sqlite3", timeout=10, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def rows(server: ServerProcess) -> list[AuditRecord]:
    with database(server) as conn:
        found = conn.execute(f"SELECT {COLUMNS} FROM audit_log ORDER BY seq").fetchall()
    return [AuditRecord(*row) for row in found]


def head(server: ServerProcess) -> tuple[int, str]:
    with database(server) as conn:
        seq, digest = conn.execute("SELECT head_seq, head_hash FROM audit_anchor").fetchone()
    return int(seq), str(digest)


def verify(server: ServerProcess, *args: str) -> tuple[int, str]:
    result = rmm(server, "audit", "verify", *args, check=False)
    return result.returncode, result.stdout + result.stderr


def offline(server: ServerProcess, *args: str) -> tuple[int, str]:
    """`rmm-server audit verify` on the data directory: no server call, nothing written."""
    result = subprocess.run(
        [str(BIN / "rmm-server"), "audit", "verify", "--data-dir", str(server.data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout + result.stderr


def checkpoint_file(server: ServerProcess) -> Path:
    return server.data_dir / "audit-checkpoints.log"


def assert_intact(server: ServerProcess) -> None:
    code, text = verify(server)
    assert code == 0, text
    assert "database: ok" in text and "checkpoints: ok" in text, text


@contextmanager
def restored(server: ServerProcess) -> Iterator[list[AuditRecord]]:
    """Yield the entries; afterwards put the audit tables back as they were."""
    entries = rows(server)
    before = head(server)
    try:
        yield entries
    finally:
        with database(server) as conn:
            conn.execute("BEGIN")
            conn.execute("DELETE FROM audit_log")
            conn.executemany(
                f"INSERT INTO audit_log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [tuple(entry.to_json().values()) for entry in entries],
            )
            conn.execute("UPDATE audit_anchor SET head_seq = ?, head_hash = ?", before)
            conn.execute("COMMIT")


def forge(entry: AuditRecord, **changes: Any) -> AuditRecord:
    changed = AuditRecord(**{**entry.to_json(), **changes, "hash": ""})
    return AuditRecord(**{**changed.to_json(), "hash": changed.computed_hash()})


def test_a_clean_chain_verifies_against_its_checkpoints(server: ServerProcess) -> None:
    code, text = verify(server)
    assert code == 0, text
    last = rows(server)[-1]
    assert (
        f"checkpoints: ok, 13 signed checkpoints match the chain, the newest seq {last.seq}" in text
    )
    report = json.loads(rmm(server, "audit", "verify", "--output", "json").stdout)
    assert report["ok"] and report["checkpoints"]["ok"]
    assert report["checkpoints"]["newest"]["hash"] == last.hash
    assert report["checkpoints"]["sources"] == [str(checkpoint_file(server))]
    lines = checkpoint_file(server).read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(13))
    code, text = offline(server)
    assert code == 0, text
    assert f"head: {last.seq}:{last.hash}" in text
    assert "checkpoints: ok, 13 signed checkpoints match the chain" in text


def test_a_truncated_and_re_anchored_chain_is_caught(server: ServerProcess) -> None:
    with restored(server) as entries:
        keep = entries[7]  # delete seqs 9..12 and move the head back onto seq 8
        with database(server) as conn:
            conn.execute("DELETE FROM audit_log WHERE seq > ?", (keep.seq,))
            conn.execute(
                "UPDATE audit_anchor SET head_seq = ?, head_hash = ?", (keep.seq, keep.hash)
            )
        code, text = verify(server)
        assert code == 1, text
        assert "database: ok, 8 entries" in text  # the chain alone is consistent...
        assert (  # ...but not with what the server signed
            f"BROKEN: checkpoints: {checkpoint_file(server)}:13: rolled back: the checkpoint of "
            in text
        )
        assert (
            f"says the log reached seq 12 (hash {entries[-1].hash[:16]}...), but the database's "
            "head is seq 8: seqs 9..12 were deleted and the head moved back" in text
        )
        code, text = offline(server)  # the same, from the data directory alone
        assert code == 1, text
        assert "seqs 9..12 were deleted and the head moved back" in text
    assert_intact(server)


def test_a_rewrite_from_row_n_with_recomputed_hashes_is_caught(server: ServerProcess) -> None:
    with restored(server) as entries:
        # Rewrite from seq 5 on, every hash recomputed and the head moved: a consistent chain.
        rewritten = entries[:4]
        for entry in entries[4:]:
            outcome = "error: NOT_FOUND: nothing happened" if entry.seq == 5 else entry.outcome
            rewritten.append(forge(entry, prev_hash=rewritten[-1].hash, outcome=outcome))
        with database(server) as conn:
            for entry in rewritten[4:]:
                conn.execute(
                    "UPDATE audit_log SET outcome = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                    (entry.outcome, entry.prev_hash, entry.hash, entry.seq),
                )
            conn.execute("UPDATE audit_anchor SET head_hash = ?", (rewritten[-1].hash,))
        code, text = verify(server)
        assert code == 1, text
        assert "database: ok, 12 entries" in text
        assert (
            f"BROKEN: checkpoints: {checkpoint_file(server)}:6: rewritten: entry seq 5 has hash "
            f"{rewritten[4].hash[:16]}... but the checkpoint of " in text
        )
        assert f"signed {entries[4].hash[:16]}... for it" in text
        assert "the newest checkpoint that still matches is at seq 4" in text
    assert_intact(server)


def test_an_edited_checkpoint_file_is_caught(server: ServerProcess) -> None:
    path = checkpoint_file(server)
    original = path.read_text()
    lines = original.splitlines()
    # Move a checkpoint onto the hash a rewrite would have given it (the signature cannot follow).
    line = json.loads(lines[6])
    line["hash"] = "e" * 64
    try:
        path.write_text("\n".join([*lines[:6], json.dumps(line), *lines[7:]]) + "\n")
        code, text = verify(server)
        assert code == 1, text
        assert f"BROKEN: checkpoints: {path}:7: the signature does not match (seq 6)" in text
        # Removing the newest lines, to hide a rollback: the running server remembers what it
        # signed last, and the copies in its log remain for when it is not running.
        path.write_text("\n".join(lines[:3]) + "\n")
        with restored(server) as entries:
            with database(server) as conn:
                conn.execute("DELETE FROM audit_log WHERE seq > 2")
                conn.execute(
                    "UPDATE audit_anchor SET head_seq = 2, head_hash = ?", (entries[1].hash,)
                )
            code, text = verify(server)
            assert code == 1, text
            assert (
                f"BROKEN: checkpoints: {path} lacks the checkpoint this server wrote last" in text
            )
            assert "seqs 3..12 were deleted and the head moved back" in text
            # With no server running, the database's anchor still names the newest checkpoint
            # line written, which the cut file lacks...
            code, text = offline(server)
            assert code == 1, text
            assert "rolled back: the database's anchor records that checkpoint seq" in text
            with database(server) as conn:  # ...unless whoever cut both erased that too...
                conn.execute("UPDATE audit_anchor SET checkpoint_digest = NULL")
            assert offline(server)[0] == 0
            code, text = offline(server, "--checkpoints", str(server.log_path))
            assert code == 1, text  # ...but not the log
            assert f"BROKEN: checkpoints: {server.log_path}:" in text
            assert "seqs 3..12 were deleted and the head moved back" in text
            code, text = verify(server, "--checkpoints", str(server.log_path))
            assert code == 1 and f"BROKEN: checkpoints: {server.log_path}:" in text, text
    finally:
        path.write_text(original)
    assert_intact(server)


def test_archive_works_with_checkpoints(server: ServerProcess, tmp_path: Path) -> None:
    # Last in the module: it removes entries for good.
    entries = rows(server)
    out = tmp_path / "audit-1.jsonl"
    archived = rmm(server, "audit", "archive", "--before", repr(entries[5].at), "--out", str(out))
    assert "archived seqs 1..5 (5 entries)" in archived.stdout
    last = json.loads(checkpoint_file(server).read_text().splitlines()[-1])
    # The archive was audited (seq 13) and its new anchor signed.
    assert (last["seq"], last["archived_through"], last["anchor_hash"]) == (13, 5, entries[4].hash)
    assert_intact(server)
    code, text = verify(server, "--archive", str(out))
    assert code == 0 and "archives link to the database at seq 5" in text, text
    # An archive file rewritten (with recomputed hashes, so it verifies on its own) is caught
    # by the checkpoints signed while its entries were still in the database.
    records = [AuditRecord.from_json(json.loads(x), "x") for x in out.read_text().splitlines()]
    forged = records[:2]
    for entry in records[2:]:
        forged.append(forge(entry, prev_hash=forged[-1].hash, target="elsewhere"))
    rewritten = tmp_path / "rewritten.jsonl"
    rewritten.write_text("".join(json.dumps(e.to_json()) + "\n" for e in forged))
    code, text = verify(server, "--archive", str(rewritten))
    assert code == 1, text
    assert f"BROKEN: checkpoints: archived seq 3 has hash {forged[2].hash[:16]}..." in text


def test_the_server_signs_at_start_on_its_timer_and_at_stop(tmp_path: Path) -> None:
    process = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--audit-checkpoint-interval", "1s"],  # every 100 entries: never, here
    )
    path = checkpoint_file(process)

    def seqs() -> list[int]:
        text = path.read_text() if path.exists() else ""
        return [json.loads(line)["seq"] for line in text.splitlines()]

    process.start()
    try:
        assert seqs() == [0]  # the head as found at start
        rmm(process, "tokens", "create", "--client", "acme", "--site", "hq")
        wait_for(lambda: seqs() == [0, 1], 30, "the timer's checkpoint of seq 1")
        rmm(process, "tokens", "create", "--client", "acme", "--site", "branch")
    finally:
        assert process.stop() == 0
    assert seqs()[-1] == 2  # signed by the timer or at stop, before the database closed
    logged = [
        line for line in process.log_path.read_text().splitlines() if "audit checkpoint {" in line
    ]
    assert len(logged) == len(seqs())


def test_replicas_sharing_postgresql_and_a_volume_each_sign_their_own_file(
    tmp_path: Path, pg_url: str
) -> None:
    data_dir = tmp_path / "server"

    def replica(name: str) -> ServerProcess:
        return ServerProcess(
            data_dir=data_dir,  # one volume: the same signing key, as replicas need
            grpc_port=free_port(),
            http_port=free_port(),
            log_path=tmp_path / f"{name}.log",
            extra_args=["--db", pg_url, "--replica-id", name, "--audit-checkpoint-every", "1"],
        )

    a = replica("replica-a").start()
    try:
        b = replica("replica-b").start()
        try:
            for n in range(3):  # appends from both, interleaved, into one chain
                rmm(a, "tokens", "create", "--client", f"a{n}", "--site", "hq")
                rmm(b, "tokens", "create", "--client", f"b{n}", "--site", "hq")
            for server in (a, b):
                code, text = verify(server)
                assert code == 0, text
                assert "database: ok, 6 entries" in text
            files = sorted(p.name for p in data_dir.glob("audit-checkpoints*.log"))
            assert files == ["audit-checkpoints.replica-a.log", "audit-checkpoints.replica-b.log"]
            report = json.loads(rmm(a, "audit", "verify", "-o", "json").stdout)
            assert report["checkpoints"]["newest"]["seq"] == 6
            assert len(report["checkpoints"]["sources"]) == 2
            assert "ROLLED BACK" not in a.log() + b.log()
        finally:
            b.stop()
    finally:
        a.stop()


def test_a_checkpoint_file_put_back_as_an_older_copy_is_caught_before_and_after_a_restart(
    tmp_path: Path,
) -> None:
    """Copy the checkpoint file, let the server go on, put the old copy back: verify says the
    file was rolled back; a restarted server says so in its log, and the gap it leaves in the
    file keeps showing after the database's record has moved on."""
    process = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--audit-checkpoint-every", "1", "--audit-checkpoint-interval", "1h"],
    )
    process.start()
    try:
        for n in range(3):
            rmm(process, "tokens", "create", "--client", f"c{n}", "--site", "hq")
        path = checkpoint_file(process)
        old_copy = path.read_bytes()
        for n in range(3, 7):
            rmm(process, "tokens", "create", "--client", f"c{n}", "--site", "hq")
        assert_intact(process)
        path.write_bytes(old_copy)
        code, text = verify(process)  # the running server remembers what it wrote last
        assert code == 1, text
        assert f"{path} lacks the checkpoint this server wrote last (seq 7" in text, text
        process.stop()
        code, text = offline(process)  # no server: the database's record still shows it
        assert code == 1 and "the files lack it and its newest line is seq 3" in text, text
        process.start()
        rmm(process, "tokens", "create", "--client", "after", "--site", "hq")
        said = process.log_path.read_text()
        assert "AUDIT CHECKPOINT FILE ROLLED BACK: the database records checkpoint seq 7" in said
        code, text = verify(process)
        assert code == 1, text
        assert "does not follow the line before it" in text, text
        assert "replaced by an older copy of itself" in text
    finally:
        process.stop()
