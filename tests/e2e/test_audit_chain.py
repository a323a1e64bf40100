"""`rmm audit verify` against a real server whose SQLite database is tampered with directly, and
`rmm audit archive|export` with the archive files checked offline."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from rmm_common.audit_chain import AuditRecord
from tests.helpers import ServerProcess, free_port, rmm, rmm_json

COLUMNS = "seq, at, operator, action, target, details_json, outcome, prev_hash, hash"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module; each tampering test puts the database back as it was."""
    tmp = tmp_path_factory.mktemp("audit")
    process = ServerProcess(
        data_dir=tmp / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp / "server.log",
    ).start()
    try:
        for n in range(12):  # twelve audited calls: entries 1..12
            rmm(process, "tokens", "create", "--client", f"c{n}", "--site", "hq")
        yield process
    finally:  # also when the calls above fail, which skips what follows a plain yield
        process.stop()


@contextmanager
def database(server: ServerProcess) -> Iterator[sqlite3.Connection]:
    """The live server's database, for changing it behind the server's back."""
    conn = sqlite3.connect(server.data_dir / "rmm.sqlite3", timeout=10, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def rows(server: ServerProcess) -> list[AuditRecord]:
    with database(server) as conn:
        found = conn.execute(f"SELECT {COLUMNS} FROM audit_log ORDER BY seq").fetchall()
    return [AuditRecord(*row) for row in found]


def verify(server: ServerProcess, *args: str) -> tuple[int, str]:
    result = rmm(server, "audit", "verify", *args, check=False)
    return result.returncode, result.stdout + result.stderr


def assert_intact(server: ServerProcess) -> None:
    code, text = verify(server)
    assert code == 0, text
    assert "database: ok" in text


def test_verify_prints_the_head(server: ServerProcess) -> None:
    code, text = verify(server)
    assert code == 0, text
    last = rows(server)[-1]
    assert f"head: {last.seq}:{last.hash}" in text
    report = json.loads(rmm(server, "audit", "verify", "--output", "json").stdout)
    assert report["ok"] and report["database"]["entries"] == len(rows(server))
    assert report["head"] == {"seq": last.seq, "hash": last.hash}


def test_an_edited_outcome_fails_verify_naming_its_seq(server: ServerProcess) -> None:
    target = rows(server)[4]
    with database(server) as conn:
        conn.execute(
            "UPDATE audit_log SET outcome = 'ok' || '' || ' ' WHERE seq = ?", (target.seq,)
        )
    code, text = verify(server)
    assert code == 1, text
    assert f"seq {target.seq} was edited" in text and "BROKEN" in text
    with database(server) as conn:
        conn.execute("UPDATE audit_log SET outcome = ? WHERE seq = ?", (target.outcome, target.seq))
    assert_intact(server)


def test_a_deleted_entry_fails_verify(server: ServerProcess) -> None:
    target = rows(server)[3]
    with database(server) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = ?", (target.seq,))
    code, text = verify(server)
    assert code == 1 and f"seq {target.seq} missing" in text, text
    with database(server) as conn:
        conn.execute(
            f"INSERT INTO audit_log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tuple(target.to_json().values()),
        )
    assert_intact(server)


def test_reordered_entries_fail_verify(server: ServerProcess) -> None:
    first, second = rows(server)[2], rows(server)[6]
    swap = [(-1, first.seq), (first.seq, second.seq), (second.seq, -1)]
    with database(server) as conn:
        for new, old in swap:
            conn.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (new, old))
    code, text = verify(server)
    assert code == 1, text
    assert f"seq {first.seq} holds the entry written as seq {second.seq}" in text
    with database(server) as conn:
        for new, old in swap:  # the same three moves undo it
            conn.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (new, old))
    assert_intact(server)


def forge(entry: AuditRecord, **changes: Any) -> AuditRecord:
    """Return `entry` changed, with its hash recomputed as a careful forger would."""
    changed = AuditRecord(**{**entry.to_json(), **changes, "hash": ""})
    return AuditRecord(**{**changed.to_json(), "hash": changed.computed_hash()})


def test_an_inserted_entry_fails_verify(server: ServerProcess) -> None:
    entries = rows(server)
    after = entries[5]
    fake = forge(after, seq=after.seq + 1, prev_hash=after.hash, outcome="ok", target="made-up")
    with database(server) as conn:
        for entry in reversed(entries[6:]):  # make room: renumber everything after
            conn.execute("UPDATE audit_log SET seq = seq + 1 WHERE seq = ?", (entry.seq,))
        conn.execute(
            f"INSERT INTO audit_log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            tuple(fake.to_json().values()),
        )
        conn.execute("UPDATE audit_anchor SET head_seq = head_seq + 1")
    code, text = verify(server)
    assert code == 1, text
    assert f"seq {after.seq + 2} holds the entry written as seq {after.seq + 1}" in text
    assert "inserted before it" in text
    with database(server) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = ?", (fake.seq,))
        for entry in entries[6:]:
            conn.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq = ?", (entry.seq + 1,))
        conn.execute("UPDATE audit_anchor SET head_seq = head_seq - 1")
    assert_intact(server)


def test_a_rewritten_chain_is_caught_by_a_head_kept_elsewhere(server: ServerProcess) -> None:
    report = json.loads(rmm(server, "audit", "verify", "--output", "json").stdout)
    kept = f"{report['head']['seq']}:{report['head']['hash']}"
    code, text = verify(server, "--expect", kept)
    assert code == 0 and f"seq {report['head']['seq']} still has the expected hash" in text, text
    entries = rows(server)
    # Rewrite from the third entry on, every hash recomputed and the head moved: the chain
    # itself is consistent again, which only an outside copy of a hash can show.
    rewritten: list[AuditRecord] = entries[:2]
    for entry in entries[2:]:
        changes: dict[str, Any] = {"prev_hash": rewritten[-1].hash}
        if entry.seq == entries[2].seq:
            changes["outcome"] = "error: NOT_FOUND: nothing happened here"
        rewritten.append(forge(entry, **changes))
    with database(server) as conn:
        for entry in rewritten[2:]:
            conn.execute(
                "UPDATE audit_log SET outcome = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (entry.outcome, entry.prev_hash, entry.hash, entry.seq),
            )
        conn.execute("UPDATE audit_anchor SET head_hash = ?", (rewritten[-1].hash,))
    assert_intact(server)  # the rewrite is invisible to the chain alone...
    code, text = verify(server, "--expect", kept)
    assert code == 1 and "the chain was rewritten" in text, text  # ...but not to the kept head
    with database(server) as conn:
        for entry in entries[2:]:
            conn.execute(
                "UPDATE audit_log SET outcome = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (entry.outcome, entry.prev_hash, entry.hash, entry.seq),
            )
        conn.execute("UPDATE audit_anchor SET head_hash = ?", (entries[-1].hash,))
    assert verify(server, "--expect", kept)[0] == 0


def test_archive_moves_the_oldest_entries_to_a_file_that_verifies(
    server: ServerProcess, tmp_path: Path
) -> None:
    entries = rows(server)
    keep_from = entries[5]  # archive the five oldest: everything written before this one
    out = tmp_path / "audit-1.jsonl"
    archived = rmm(server, "audit", "archive", "--before", repr(keep_from.at), "--out", str(out))
    assert f"archived seqs 1..{entries[4].seq} (5 entries)" in archived.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert lines[4]["hash"] == entries[4].hash
    assert rows(server)[0].seq == 6  # gone from the database
    assert not list(tmp_path.glob("*.part"))

    code, text = verify(server)
    assert code == 0 and "seqs 1..5 are archived" in text, text
    code, text = verify(server, "--archive", str(out))
    assert code == 0, text
    assert f"archive {out}: ok, seqs 1..5 (5 entries)" in text
    assert "archives link to the database at seq 5" in text
    code, text = verify(server, "--archive", str(out), "--offline")
    assert code == 0 and "database" not in text, text

    # A second archive continues the first; together they link to the database.
    second = tmp_path / "audit-2.jsonl"
    keep_from = rows(server)[4]  # seq 10: archive 6..9
    rmm(server, "audit", "archive", "--before", repr(keep_from.at), "--out", str(second))
    code, text = verify(server, "--archive", str(second), "--archive", str(out))
    assert code == 0 and "archives link to the database at seq 9" in text, text
    code, text = verify(server, "--archive", str(out))  # the newer archive is missing
    assert code == 1 and "give the archive(s) holding seqs 6..9 too" in text, text
    again = rmm(server, "audit", "archive", "--before", "0s", "--out", str(out), check=False)
    assert again.returncode == 2 and "never overwritten" in again.stderr


def test_a_tampered_archive_file_is_caught(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    exported = rmm(server, "audit", "export", "--out", str(out))
    assert "exported seqs" in exported.stdout
    assert verify(server, "--archive", str(out))[0] == 0
    lines = out.read_text().splitlines()
    line = json.loads(lines[2])
    line["outcome"] = "error: PERMISSION_DENIED: it was not me"
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join([*lines[:2], json.dumps(line), *lines[3:]]) + "\n")
    code, text = verify(server, "--archive", str(tampered), "--offline")
    assert code == 1 and f"seq {line['seq']} was edited" in text, text
    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("\n".join([*lines[:2], *lines[3:]]) + "\n")
    code, text = verify(server, "--archive", str(dropped), "--offline")
    assert code == 1 and f"seq {line['seq']} missing" in text, text
    broken = tmp_path / "broken.jsonl"
    broken.write_text(lines[0] + "\n{not json\n")
    code, text = verify(server, "--archive", str(broken), "--offline")
    assert code == 1 and f"{broken}:2: not JSON" in text, text


def test_archive_is_refused_while_the_chain_is_broken(
    server: ServerProcess, tmp_path: Path
) -> None:
    target = rows(server)[1]
    with database(server) as conn:
        conn.execute("UPDATE audit_log SET target = 'elsewhere' WHERE seq = ?", (target.seq,))
    out = tmp_path / "refused.jsonl"
    refused = rmm(server, "audit", "archive", "--before", "0s", "--out", str(out), check=False)
    assert refused.returncode == 1 and f"seq {target.seq} was edited" in refused.stderr
    assert rows(server)[1].seq == target.seq  # nothing was removed
    with database(server) as conn:
        conn.execute("UPDATE audit_log SET target = ? WHERE seq = ?", (target.target, target.seq))
    assert_intact(server)


def test_export_is_for_admins_and_leaves_nothing_when_refused(
    server: ServerProcess, tmp_path: Path
) -> None:
    tier3 = rmm_json(server, "operators", "add", "auditor", "--role", "tier3")["token"]
    assert rmm(server, "audit", "list", token=tier3).returncode == 0
    out = tmp_path / "mine.jsonl"
    denied = rmm(server, "audit", "export", "--out", str(out), token=tier3, check=False)
    assert denied.returncode == 3 and "ExportAudit needs admin" in denied.stderr
    assert list(tmp_path.iterdir()) == []
