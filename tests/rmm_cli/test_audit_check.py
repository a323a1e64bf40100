"""`rmm audit verify`'s checking on its own: facts in, findings and an exit code out, no click."""

from __future__ import annotations

from typing import Any

import pytest

from rmm_cli.audit_check import (
    EXIT_BROKEN,
    ArchiveReport,
    VerifyFacts,
    archived_pins,
    judge,
    seqs_to_look_up,
)
from rmm_cli.client import CliError
from rmm_proto import operator_pb2

H = {n: f"{n:x}".rjust(64, "a") for n in range(1, 200)}  # a distinct 64-hex hash per seq
OTHER = "f" * 64


def database(**kwargs: Any) -> operator_pb2.VerifyAuditResponse:
    fields: dict[str, Any] = {"entries": 10, "first_seq": 1, "last_seq": 10}
    fields.update(kwargs)
    return operator_pb2.VerifyAuditResponse(**fields)


def archives(first: int, last: int, **hashes: str) -> ArchiveReport:
    info = {"file": "a.jsonl", "ok": True, "first_seq": first, "last_seq": last}
    info["entries"] = last - first + 1
    return ArchiveReport(
        files=[info],
        first_seq=first,
        last_seq=last,
        last_hash=H[last],
        hashes={int(k[1:]): v for k, v in hashes.items()},
    )


def test_an_intact_database_prints_its_span_the_head_and_the_checkpoints() -> None:
    findings = judge(VerifyFacts(expected={}, database=database(), head=(10, H[10])))
    assert findings.problems == []
    assert findings.exit_code == 0
    assert findings.lines == [
        "database: ok, 10 entries (seqs 1..10)",
        f"head: 10:{H[10]}",
        "checkpoints: this server writes none",
    ]
    assert findings.result["ok"] is True
    assert findings.result["head"] == {"seq": 10, "hash": H[10]}
    assert findings.result["database"]["ok"] is True
    assert "archives" not in findings.result and "linked" not in findings.result


def test_offline_archives_alone() -> None:
    findings = judge(VerifyFacts(expected={}, archive_report=archives(5, 9)))
    assert findings.exit_code == 0
    assert findings.lines == [
        "archive a.jsonl: ok, seqs 5..9 (5 entries)",
        "  (starts after seq 4: the archive before it was not given, so that link is not checked)",
    ]
    assert "database" not in findings.result


def test_a_broken_database_skips_what_depends_on_it() -> None:
    facts = VerifyFacts(expected={3: H[3]}, database=database(problem="seq 4: hash mismatch"))
    assert seqs_to_look_up(facts.expected, None, facts.database) == set()
    findings = judge(facts)
    assert findings.problems == ["database: seq 4: hash mismatch"]
    assert findings.exit_code == EXIT_BROKEN
    assert findings.result["ok"] is False
    assert findings.lines == []


def test_archives_link_to_the_database() -> None:
    report = archives(1, 5)
    db = database(first_seq=6, archived_through=5)
    assert seqs_to_look_up({}, report, db) == {5}
    linked = judge(VerifyFacts(expected={}, archive_report=report, database=db, found={5: H[5]}))
    assert linked.result["linked"] is True
    assert "archives link to the database at seq 5" in linked.lines
    unlinked = judge(VerifyFacts(expected={}, archive_report=report, database=db, found={}))
    assert unlinked.result["linked"] is False
    assert unlinked.problems == [
        f"the archives end at seq 5 with hash {H[5][:16]}... but the database has no such "
        "entry... there: they are not this log's, or one side was rewritten"
    ]


def test_archives_that_end_before_what_was_archived() -> None:
    report = archives(1, 5)
    db = database(first_seq=9, archived_through=8)
    assert seqs_to_look_up({}, report, db) == set()
    findings = judge(VerifyFacts(expected={}, archive_report=report, database=db))
    assert findings.problems == [
        "the archives end at seq 5 but the database was archived through seq 8: give the "
        "archive(s) holding seqs 6..8 too"
    ]
    assert "linked" not in findings.result


def test_expected_hashes_kept_changed_and_missing() -> None:
    db = database(archived_through=3, first_seq=4)
    expected = {2: H[2], 6: H[6], 7: H[7], 50: H[50]}
    assert seqs_to_look_up(expected, None, db) == {2, 6, 7, 50}
    findings = judge(VerifyFacts(expected=expected, database=db, found={6: H[6], 7: OTHER}))
    assert "seq 6 still has the expected hash" in findings.lines
    assert findings.problems == [
        "--expect 2: no such entry in the database (seqs up to 3 are archived: give the archive)",
        f"--expect 7: the entry now has hash {OTHER[:16]}..., not {H[7][:16]}...: the chain was "
        "rewritten after that hash was kept",
        "--expect 50: no such entry in the database",
    ]


def test_an_expected_hash_found_in_the_archives_is_not_looked_up() -> None:
    report = archives(1, 5, s3=H[3])
    assert seqs_to_look_up({3: H[3]}, report, database(archived_through=5)) == {5}
    findings = judge(VerifyFacts(expected={3: H[3]}, archive_report=report))
    assert findings.lines[-1] == "seq 3 still has the expected hash"
    assert findings.exit_code == 0
    missing = judge(VerifyFacts(expected={4: H[4]}, archive_report=report))
    assert missing.problems == ["--expect 4: no such entry in the database or the archives given"]


def test_archived_pins_are_checked_in_the_files_and_problems_keep_their_order() -> None:
    report = archives(1, 5)
    report.problems.append("b.jsonl: not JSON")  # an archive problem comes first
    db = database(
        archived_through=5,
        first_seq=6,
        archived_pins=[f"4:{H[4]}"],
        checkpoint_problems=["seq 9: signature does not verify"],
    )
    # A broken archive report is not searched for pins...
    assert archived_pins(db, report) == {}
    report.problems.clear()
    assert archived_pins(db, report) == {4: H[4]}
    report.problems.append("b.jsonl: not JSON")
    findings = judge(VerifyFacts(expected={}, archive_report=report, database=db))
    assert findings.problems == [
        "b.jsonl: not JSON",
        "checkpoints: seq 9: signature does not verify",
    ]
    # ...and a good one whose pinned entry differs is a rewrite.
    report.problems.clear()
    findings = judge(
        VerifyFacts(
            expected={},
            archive_report=report,
            database=db,
            pinned_in_files={4: OTHER},
            found={5: H[5]},
        )
    )
    assert findings.problems == [
        "checkpoints: seq 9: signature does not verify",
        f"checkpoints: archived seq 4 has hash {OTHER[:16]}... in the archive files but a signed "
        f"checkpoint says {H[4][:16]}...: the archive was rewritten (or the chain before it was "
        "archived)",
    ]
    assert findings.result["checkpoints"]["ok"] is False
    assert findings.result["problems"] is findings.problems


def test_a_malformed_pin_from_the_server_is_a_usage_error() -> None:
    with pytest.raises(CliError):
        archived_pins(database(archived_pins=["nonsense"]), archives(1, 5))
