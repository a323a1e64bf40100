"""The checking behind `rmm audit verify`: archive files read and chained offline, and `judge`,
a pure function from what was gathered (archives, the server's VerifyAudit answer, the head, the
hashes looked up) to the findings and the exit code. No click, no server: tested on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmm_cli.client import EXIT_FAILED, EXIT_USAGE, CliError
from rmm_cli.output import iso
from rmm_common.audit_chain import GENESIS_HASH, AuditRecord, ChainChecker
from rmm_proto import operator_pb2

EXIT_BROKEN = EXIT_FAILED


@dataclass
class ArchiveReport:
    """What checking archive files offline found."""

    files: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    first_seq: int = 0
    last_seq: int = 0
    last_hash: str = ""
    hashes: dict[int, str] = field(default_factory=dict)  # only what --expect asks about

    @property
    def ok(self) -> bool:
        return not self.problems


def read_archive(path: Path) -> Iterator[AuditRecord]:
    """Yield the entries of an export or archive file; raise ValueError naming the line."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{where}: not JSON ({exc})") from None
            if not isinstance(data, dict):
                raise ValueError(f"{where}: not a JSON object")
            yield AuditRecord.from_json(data, where)


def _first_entry(path: Path) -> AuditRecord | None:
    try:
        return next(read_archive(path), None)
    except (OSError, ValueError):
        return None


def check_archives(paths: list[Path], want: frozenset[int] = frozenset()) -> ArchiveReport:
    """Check archive files offline, in seq order, each one continuing the one before."""
    report = ArchiveReport()
    # Files in the order their entries run; an unreadable one goes first to be reported.
    ordered = sorted(paths, key=lambda p: (e.seq if (e := _first_entry(p)) else 0, str(p)))
    checker: ChainChecker | None = None
    for path in ordered:
        info: dict[str, Any] = {"file": str(path), "ok": False}
        report.files.append(info)
        try:
            entries = read_archive(path)
            first = next(entries, None)
            if first is None:
                raise ValueError(f"{path}: holds no audit entries")
            if checker is None:
                start = ChainChecker(
                    first.seq - 1,
                    GENESIS_HASH if first.seq == 1 else first.prev_hash,
                    "the start of the log" if first.seq == 1 else f"seq {first.seq - 1}",
                )
                if first.seq > 1:
                    info["links_to"] = {"seq": first.seq - 1, "hash": first.prev_hash}
                checker = start
            count_before = checker.count
            info["first_seq"] = first.seq
            for entry in _chain(first, entries):
                if checker.check(entry) is not None:
                    break
                if entry.seq in want:
                    report.hashes[entry.seq] = entry.hash
        except (OSError, ValueError) as exc:
            report.problems.append(str(exc))
            info["problem"] = str(exc)
            return report
        info["entries"] = checker.count - count_before
        info["last_seq"] = checker.last_seq
        info["last_hash"] = checker.last_hash
        if checker.problem is not None:
            message = f"{path}: {checker.problem.message}"
            info["problem"] = message
            report.problems.append(message)
            return report
        info["ok"] = True
    if checker is not None:
        report.first_seq = int(report.files[0]["first_seq"])
        report.last_seq = checker.last_seq
        report.last_hash = checker.last_hash
    return report


def _chain(first: AuditRecord, rest: Iterator[AuditRecord]) -> Iterator[AuditRecord]:
    yield first
    yield from rest


def parse_expect(values: tuple[str, ...]) -> dict[int, str]:
    """Read --expect SEQ:HASH pairs."""
    expected: dict[int, str] = {}
    for value in values:
        seq_text, sep, digest = value.partition(":")
        digest = digest.strip().lower()
        if not sep or not seq_text.strip().isdigit() or len(digest) != 64:
            raise CliError(
                f"--expect {value!r} is not SEQ:HASH (e.g. 1234:<64 hex digits>, as "
                "`rmm audit verify` printed it)",
                EXIT_USAGE,
            )
        expected[int(seq_text)] = digest
    return expected


def checkpoint_summary(response: operator_pb2.VerifyAuditResponse) -> dict[str, Any]:
    """Return what VerifyAudit said about the signed checkpoints, JSON-ready."""
    return {
        "ok": not response.checkpoint_problems,
        "read": response.checkpoints,
        "checked": response.checkpoints_checked,
        "newest": {
            "seq": response.newest_checkpoint_seq,
            "hash": response.newest_checkpoint_hash,
            "at": response.newest_checkpoint_at,
        }
        if response.checkpoints
        else None,
        "sources": list(response.checkpoint_sources),
        "signing_key": response.signing_key,
        "problems": list(response.checkpoint_problems),
    }


def checkpoint_line(response: operator_pb2.VerifyAuditResponse) -> str:
    """Return the line `rmm audit verify` prints about the checkpoints."""
    if not response.signing_key:
        return "checkpoints: this server writes none"
    if not response.checkpoints:
        return "checkpoints: none yet (the server writes them to DATA_DIR/audit-checkpoints.log)"
    if response.checkpoint_problems:
        return f"checkpoints: {response.checkpoints} read; problems below"
    return (
        f"checkpoints: ok, {response.checkpoints} signed checkpoints match the chain, the newest "
        f"seq {response.newest_checkpoint_seq} of {iso(response.newest_checkpoint_at)} "
        f"(key {response.signing_key[:16]}...)"
    )


@dataclass(frozen=True)
class VerifyFacts:
    """What `rmm audit verify` gathered: the input of `judge`."""

    expected: dict[int, str]  # --expect SEQ:HASH
    archive_report: ArchiveReport | None = None  # None: no --archive given
    database: operator_pb2.VerifyAuditResponse | None = None  # None: offline
    head: tuple[int, str] | None = None  # the newest entry's seq and hash (ListAudit)
    pinned_in_files: dict[int, str] = field(default_factory=dict)  # see archived_pins
    found: dict[int, str] = field(default_factory=dict)  # see seqs_to_look_up


@dataclass
class Findings:
    """What `rmm audit verify` says: JSON for scripts, lines and problems for people."""

    result: dict[str, Any]
    lines: list[str]
    problems: list[str]

    @property
    def exit_code(self) -> int:
        return EXIT_BROKEN if self.problems else 0


def archived_pins(
    database: operator_pb2.VerifyAuditResponse | None, archive_report: ArchiveReport | None
) -> dict[int, str]:
    """Return the signed checkpoints of entries since archived, SEQ: HASH, when the archive files
    given must be checked for them (a second pass over the files, for just those seqs)."""
    if database is None or archive_report is None or not archive_report.ok:
        return {}
    return parse_expect(tuple(database.archived_pins))


def _archives_end_early(
    archive_report: ArchiveReport | None, database: operator_pb2.VerifyAuditResponse | None
) -> bool:
    return (
        database is not None
        and not database.problem
        and archive_report is not None
        and archive_report.ok
        and bool(archive_report.last_seq)
        and archive_report.last_seq < database.archived_through
    )


def seqs_to_look_up(
    expected: dict[int, str],
    archive_report: ArchiveReport | None,
    database: operator_pb2.VerifyAuditResponse | None,
) -> set[int]:
    """Return the entries to look up in the database: the end of the archives (their link) and
    any --expect not found in an archive."""
    wanted: set[int] = set()
    if database is None or database.problem:
        return wanted
    ends = archive_report.last_seq if archive_report is not None and archive_report.ok else 0
    if ends and not _archives_end_early(archive_report, database):
        wanted.add(ends)
    known = archive_report.hashes if archive_report is not None else {}
    wanted.update(seq for seq in expected if seq not in known)
    return wanted


def _archive_lines(report: ArchiveReport) -> list[str]:
    lines = [
        f"archive {info['file']}: ok, seqs {info['first_seq']}..{info['last_seq']} "
        f"({info['entries']} entries)"
        for info in report.files
        if info["ok"]
    ]
    if report.ok and report.first_seq > 1:
        lines.append(
            f"  (starts after seq {report.first_seq - 1}: the archive before it was "
            "not given, so that link is not checked)"
        )
    return lines


def _judge_database(facts: VerifyFacts, findings: Findings) -> None:
    database = facts.database
    assert database is not None
    findings.result["database"] = {
        "ok": not database.problem,
        "entries": database.entries,
        "first_seq": database.first_seq,
        "last_seq": database.last_seq,
        "archived_through": database.archived_through,
        "problem": database.problem,
    }
    findings.result["checkpoints"] = checkpoint_summary(database)
    findings.problems.extend(f"checkpoints: {text}" for text in database.checkpoint_problems)
    if database.problem:
        findings.problems.append(f"database: {database.problem}")
        return
    archived = (
        f"; seqs 1..{database.archived_through} are archived" if database.archived_through else ""
    )
    span = f" (seqs {database.first_seq}..{database.last_seq})" if database.entries else ""
    findings.lines.append(f"database: ok, {database.entries} entries{span}{archived}")
    if facts.head is not None:
        seq, digest = facts.head
        findings.result["head"] = {"seq": seq, "hash": digest}
        findings.lines.append(f"head: {seq}:{digest}")
    findings.lines.append(checkpoint_line(database))


def _judge_pins(facts: VerifyFacts, findings: Findings) -> None:
    for seq, digest in sorted(archived_pins(facts.database, facts.archive_report).items()):
        have = facts.pinned_in_files.get(seq)
        if have is not None and have != digest:
            findings.problems.append(
                f"checkpoints: archived seq {seq} has hash {have[:16]}... in the archive "
                f"files but a signed checkpoint says {digest[:16]}...: the archive was "
                "rewritten (or the chain before it was archived)"
            )


def _judge_link(facts: VerifyFacts, findings: Findings) -> None:
    report, database = facts.archive_report, facts.database
    if report is None or database is None:
        return
    if _archives_end_early(report, database):
        findings.problems.append(
            f"the archives end at seq {report.last_seq} but the database was "
            f"archived through seq {database.archived_through}: give the archive(s) "
            f"holding seqs {report.last_seq + 1}..{database.archived_through} too"
        )
    if report.last_seq not in seqs_to_look_up(facts.expected, report, database):
        return
    seq = report.last_seq
    if facts.found.get(seq) == report.last_hash:
        findings.result["linked"] = True
        findings.lines.append(f"archives link to the database at seq {seq}")
    else:
        findings.result["linked"] = False
        findings.problems.append(
            f"the archives end at seq {seq} with hash {report.last_hash[:16]}... but "
            f"the database has {(facts.found.get(seq) or 'no such entry')[:16]}... there: they "
            "are not this log's, or one side was rewritten"
        )


def _judge_expected(facts: VerifyFacts, findings: Findings) -> None:
    report, database = facts.archive_report, facts.database
    for seq, digest in sorted(facts.expected.items()):
        have = (report.hashes if report is not None else {}).get(seq) or facts.found.get(seq)
        if have is None:
            if database is not None and database.problem:
                continue  # the database's problem is reported already
            findings.problems.append(
                f"--expect {seq}: no such entry in the database"
                + (" or the archives given" if report is not None else "")
                + (
                    f" (seqs up to {database.archived_through} are archived: give the archive)"
                    if database is not None and seq <= database.archived_through
                    else ""
                )
            )
        elif have != digest:
            findings.problems.append(
                f"--expect {seq}: the entry now has hash {have[:16]}..., not {digest[:16]}...: "
                "the chain was rewritten after that hash was kept"
            )
        else:
            findings.lines.append(f"seq {seq} still has the expected hash")


def judge(facts: VerifyFacts) -> Findings:
    """Return what the gathered facts say about the chain: every problem, in a fixed order
    (archives, checkpoints, database, archived pins, the archives' link, --expect)."""
    findings = Findings(result={"ok": True}, lines=[], problems=[])
    findings.result["problems"] = findings.problems
    if facts.archive_report is not None:
        findings.result["archives"] = facts.archive_report.files
        findings.problems.extend(facts.archive_report.problems)
        findings.lines.extend(_archive_lines(facts.archive_report))
    if facts.database is not None:
        _judge_database(facts, findings)
        _judge_pins(facts, findings)
    _judge_link(facts, findings)
    _judge_expected(facts, findings)
    findings.result["ok"] = not findings.problems
    return findings
