"""`rmm operators` and `rmm audit`: who may operate the server, and the record of what they did."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from rmm_cli.client import EXIT_FAILED, EXIT_USAGE, CliError, Connection
from rmm_cli.main import OUTPUT_OPTION, emit, emit_json, main, print_table, when
from rmm_common.durations import parse_duration
from rmm_common.errors import InvalidArgument
from rmm_proto import operator_pb2
from rmm_server.audit import GENESIS_HASH, AuditRecord, ChainChecker

# A bare number this large is a unix time, not a number of seconds ago (2001-09-09 onwards).
UNIX_TIME_FLOOR = 1e9
EXIT_BROKEN = EXIT_FAILED


def parse_when(text: str, option: str, now: float | None = None) -> float:
    """Return the unix time `text` names: a duration ago (2h, 7d), an ISO 8601 date or time
    (without a zone: this computer's), or a unix time."""
    value = text.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if number >= UNIX_TIME_FLOOR:
            return number
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        pass
    else:
        return moment.astimezone().timestamp()
    try:
        return (now if now is not None else time.time()) - parse_duration(value)
    except InvalidArgument:
        raise CliError(
            f"{option} {text!r} is neither a duration (2h, 7d), an ISO date or time "
            "(2024-05-01, 2024-05-01T12:00:00Z) nor a unix time",
            EXIT_USAGE,
        ) from None


def iso(ts: float) -> str:
    """Return a unix time as local ISO 8601 with its offset, to the second."""
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


# --- operators -----------------------------------------------------------------------------


@main.group()
def operators() -> None:
    """Operators: who may use this server, with which role (admin only)."""


def operator_row(info: operator_pb2.OperatorInfo) -> dict[str, Any]:
    """Return an operator as JSON-ready data."""
    return {
        "id": info.id,
        "name": info.name,
        "role": info.role,
        "state": "revoked" if info.revoked_at else "active",
        "created_at": info.created_at,
        "created_by": info.created_by,
        "revoked_at": info.revoked_at or None,
    }


@operators.command("add")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    help="viewer, tier1, tier2, tier3 or admin; each may do everything the ones before may.",
)
@OUTPUT_OPTION
@click.pass_obj
def operators_add(conn: Connection, name: str, role: str, output: str) -> None:
    """Add an operator; its token is printed once (the server keeps only its hash)."""
    response = conn.call(
        conn.stub().AddOperator, operator_pb2.AddOperatorRequest(name=name, role=role)
    )
    if output == "json":
        emit_json({**operator_row(response.operator), "token": response.token})
        return
    click.echo(response.token)
    click.echo(
        f"operator {response.operator.name} ({response.operator.role}) added; the token above "
        "is not shown again: hand it over safely (it goes in RMM_TOKEN)",
        err=True,
    )


@operators.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked operators.")
@OUTPUT_OPTION
@click.pass_obj
def operators_list(conn: Connection, include_revoked: bool, output: str) -> None:
    """List operators and their roles (never their tokens)."""
    response = conn.call(
        conn.stub().ListOperators,
        operator_pb2.ListOperatorsRequest(include_revoked=include_revoked),
    )
    if output == "json":
        emit_json([operator_row(info) for info in response.operators])
        return
    table = Table("NAME", "ROLE", "STATE", "CREATED", "BY", "ID")
    for info in response.operators:
        table.add_row(
            info.name,
            info.role,
            f"revoked {when(info.revoked_at)}" if info.revoked_at else "active",
            when(info.created_at),
            info.created_by or "-",
            info.id,
        )
    print_table(table)


@operators.command("revoke")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_obj
def operators_revoke(conn: Connection, name: str, output: str) -> None:
    """Revoke an operator (name or id): its token stops working at once."""
    info = conn.call(conn.stub().RevokeOperator, operator_pb2.RevokeOperatorRequest(name=name))
    emit(output, operator_row(info), f"operator {info.name} ({info.role}) revoked")


# --- audit ---------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The audit log: every change operators made, hash-chained so edits show."""


def record_of(entry: operator_pb2.AuditEntry) -> AuditRecord:
    """Return an entry message as a record the chain checker takes."""
    return AuditRecord(
        seq=entry.seq,
        at=entry.at,
        operator=entry.operator,
        action=entry.action,
        target=entry.target,
        details_json=entry.details_json,
        outcome=entry.outcome,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


def entry_row(entry: operator_pb2.AuditEntry) -> dict[str, Any]:
    """Return an entry as JSON-ready data, its details as an object."""
    try:
        details = json.loads(entry.details_json) if entry.details_json else {}
    except ValueError:
        details = entry.details_json  # shown as stored: verify says whether it was changed
    return {
        "seq": entry.seq,
        "at": entry.at,
        "operator": entry.operator,
        "action": entry.action,
        "target": entry.target,
        "details": details,
        "outcome": entry.outcome,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


@audit.command("list")
@click.option("--since", help="Only entries from then on: 2h, 7d, 2024-05-01, a unix time.")
@click.option("--operator", "operator_name", default="", help="Only this operator's entries.")
@click.option("--agent", default="", help="Only entries about this agent (id or its start).")
@click.option("--limit", type=click.IntRange(min=1, max=5000), default=100, show_default=True)
@OUTPUT_OPTION
@click.pass_obj
def audit_list(
    conn: Connection,
    since: str | None,
    operator_name: str,
    agent: str,
    limit: int,
    output: str,
) -> None:
    """List the newest audit entries, newest last."""
    response = conn.call(
        conn.stub().ListAudit,
        operator_pb2.ListAuditRequest(
            since=parse_when(since, "--since") if since else 0.0,
            operator=operator_name,
            agent=agent,
            limit=limit,
        ),
    )
    if output == "json":
        emit_json([entry_row(entry) for entry in response.entries])
        return
    table = Table("SEQ", "AT", "OPERATOR", "ACTION", "TARGET", "OUTCOME", "DETAILS")
    for entry in response.entries:
        details = entry.details_json if entry.details_json != "{}" else ""
        table.add_row(
            str(entry.seq),
            iso(entry.at),
            entry.operator,
            entry.action,
            entry.target or "-",
            entry.outcome,
            details if len(details) <= 80 else details[:77] + "...",
        )
    print_table(table)
    if not response.entries:
        click.echo("no audit entries match", err=True)


def stream_export(conn: Connection, before: float) -> Iterator[operator_pb2.AuditEntry]:
    """Yield the entries ExportAudit streams, oldest first; failures become CliError."""
    yield from conn.stream(conn.stub().ExportAudit, operator_pb2.ExportAuditRequest(before=before))


def write_entries(path: Path, entries: Iterator[operator_pb2.AuditEntry]) -> list[AuditRecord]:
    """Write entries to `path` as JSON lines, durably, never over an existing file.

    The lines go to PATH.part first, are fsynced, and then PATH is made by a hard link (which
    fails rather than replace a file) and the directory fsynced: PATH either is complete or
    does not exist. Return the first and last entry written (empty when none were).
    """
    if path.exists():
        raise CliError(
            f"{path} exists: audit exports are never overwritten; choose a new --out",
            EXIT_USAGE,
        )
    partial = path.with_name(path.name + ".part")
    written: list[AuditRecord] = []
    try:
        handle = partial.open("x", encoding="utf-8")
    except FileExistsError:
        raise CliError(
            f"{partial} exists: another export is writing there, or an earlier one stopped "
            "half-way (delete it)",
            EXIT_USAGE,
        ) from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc}") from None
    try:
        with handle:
            for entry in entries:
                record = record_of(entry)
                handle.write(
                    json.dumps(record.to_json(), sort_keys=True, ensure_ascii=False) + "\n"
                )
                written = [written[0] if written else record, record]
            handle.flush()
            os.fsync(handle.fileno())
        if not written:
            partial.unlink()
            return []
        os.link(partial, path)
        partial.unlink()
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except FileExistsError:
        partial.unlink(missing_ok=True)
        raise CliError(
            f"{path} appeared while exporting: audit exports are never overwritten; choose a "
            "new --out",
            EXIT_USAGE,
        ) from None
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {exc}") from None
    except BaseException:
        # The call failed (or Ctrl-C): no half export is left to be mistaken for a whole one.
        partial.unlink(missing_ok=True)
        raise
    return written


@audit.command("export")
@click.option("--before", help="Only entries older than this: 30d, 2024-05-01, a unix time.")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="New file."
)
@click.pass_obj
def audit_export(conn: Connection, before: str | None, out: Path) -> None:
    """Write audit entries, oldest first, to a new file as JSON lines (admin only)."""
    cutoff = parse_when(before, "--before") if before else 0.0
    written = write_entries(out, stream_export(conn, cutoff))
    if not written:
        click.echo("no audit entries to export", err=True)
        return
    first, last = written
    click.echo(f"exported seqs {first.seq}..{last.seq} to {out}; last hash {last.hash}")


@audit.command("archive")
@click.option("--before", required=True, help="Archive entries older than this: 90d, a date.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="New file for the archived entries (JSON lines).",
)
@click.pass_obj
def audit_archive(conn: Connection, before: str, out: Path) -> None:
    """Move old entries out of the database into a file (admin only).

    The entries are written to the file and fsynced first; only then does the server delete
    them, keeping the last one's hash as its anchor. A failure in between loses nothing.
    """
    cutoff = parse_when(before, "--before")
    written = write_entries(out, stream_export(conn, cutoff))
    if not written:
        click.echo(f"no audit entries older than {iso(cutoff)} to archive", err=True)
        return
    # Check what is on disk, not what was meant to be: the server deletes on the strength of it.
    report = check_archives([out])
    if not report.ok:
        raise CliError(
            f"{out} does not verify, so nothing was archived: {report.problems[0]}", EXIT_BROKEN
        )
    last = written[1]
    try:
        response = conn.call(
            conn.stub().ArchiveAudit,
            operator_pb2.ArchiveAuditRequest(through_seq=last.seq, through_hash=last.hash),
        )
    except CliError as exc:
        raise CliError(
            f"{exc.format_message()} (nothing was removed; {out} holds a complete export: keep "
            "it or delete it before archiving again)",
            exc.exit_code,
        ) from None
    click.echo(
        f"archived seqs {written[0].seq}..{last.seq} ({response.removed} entries) to {out}; the "
        f"database keeps seq {response.archived_through + 1} on, anchored on hash "
        f"{response.anchor_hash}"
    )


# --- verify --------------------------------------------------------------------------------


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


def find_in_database(conn: Connection, seqs: set[int]) -> dict[int, str]:
    """Return the hashes of the entries with these seqs still in the database (ExportAudit);
    the first kept entry's prev_hash is reported under its seq - 1 (the anchor)."""
    found: dict[int, str] = {}
    if not seqs:
        return found
    highest = max(seqs)
    for position, entry in enumerate(stream_export(conn, 0.0)):
        if position == 0 and entry.seq - 1 in seqs:
            found[entry.seq - 1] = entry.prev_hash
        if entry.seq in seqs:
            found[entry.seq] = entry.hash
        if entry.seq >= highest:
            break
    return found


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


# The server takes a request up to 16 MiB; a checkpoint line is about 400 bytes.
MAX_CHECKPOINT_BYTES = 15 * 1024 * 1024


def read_checkpoint_files(paths: tuple[Path, ...]) -> list[operator_pb2.CheckpointLines]:
    """Read checkpoint files (or log extracts) to send to the server with VerifyAudit."""
    given: list[operator_pb2.CheckpointLines] = []
    total = 0
    for path in paths:
        source = "stdin" if str(path) == "-" else str(path)
        try:
            if source == "stdin":
                text = sys.stdin.read()
            else:
                text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise CliError(f"cannot read the checkpoint file {path}: {exc}", EXIT_USAGE) from None
        # Only lines that can be checkpoints travel (a journal extract holds other lines too);
        # the others stay as empty strings so that messages name the right line numbers.
        lines = [line if '"sig"' in line else "" for line in text.splitlines()]
        total += sum(len(line) + 2 for line in lines)  # + protobuf's framing of each
        if total > MAX_CHECKPOINT_BYTES:
            raise CliError(
                f"{source}: the checkpoints given exceed {MAX_CHECKPOINT_BYTES >> 20} MiB: give "
                "only the checkpoint lines (`grep 'audit checkpoint'`) and the recent part "
                "(`tail -n 20000`); the newest ones matter most",
                EXIT_USAGE,
            )
        given.append(operator_pb2.CheckpointLines(source=source, lines=lines))
    return given


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


@audit.command("verify")
@click.option(
    "--archive",
    "archives",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Also check this archive or export file (repeat for several); alone, offline.",
)
@click.option("--offline", is_flag=True, help="Check only the --archive files, not the server.")
@click.option(
    "--expect",
    "expects",
    multiple=True,
    help="SEQ:HASH kept elsewhere (a head printed before): that entry must still have it.",
)
@click.option(
    "--checkpoints",
    "checkpoint_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, allow_dash=True, path_type=Path),
    help="Signed checkpoints kept elsewhere (a copy of audit-checkpoints.log, or the server's "
    "log lines; - for stdin), checked besides the server's own file (repeatable).",
)
@OUTPUT_OPTION
@click.pass_obj
def audit_verify(
    conn: Connection,
    archives: tuple[Path, ...],
    offline: bool,
    expects: tuple[str, ...],
    checkpoint_files: tuple[Path, ...],
    output: str,
) -> None:
    """Check the audit chain: every entry's hash, every link, no gaps, and that it still
    matches every checkpoint the server signed (so a rewrite or a rollback shows).

    Exit 0 when everything checked is intact, 1 with every problem when not. Print the
    head (newest seq and hash): shipped to another host, it lets a later
    `--expect SEQ:HASH` catch even a rewrite of the whole chain.
    """
    expected = parse_expect(expects)
    use_server = not offline and (bool(conn.server) or not archives)
    if checkpoint_files and not use_server:
        raise CliError(
            "--checkpoints are checked by the server (with its signing key): drop --offline, or "
            "run `rmm-server audit verify --data-dir DIR --checkpoints FILE` on its host",
            EXIT_USAGE,
        )
    given = read_checkpoint_files(checkpoint_files)
    result: dict[str, Any] = {"ok": True, "problems": []}
    problems: list[str] = result["problems"]
    lines: list[str] = []
    archive_report = check_archives(list(archives), frozenset(expected)) if archives else None
    if archive_report is not None:
        result["archives"] = archive_report.files
        problems.extend(archive_report.problems)
        for info in archive_report.files:
            if info["ok"]:
                lines.append(
                    f"archive {info['file']}: ok, seqs {info['first_seq']}..{info['last_seq']} "
                    f"({info['entries']} entries)"
                )
        if archive_report.ok and archive_report.first_seq > 1:
            lines.append(
                f"  (starts after seq {archive_report.first_seq - 1}: the archive before it was "
                "not given, so that link is not checked)"
            )
    database: operator_pb2.VerifyAuditResponse | None = None
    if use_server:
        database = conn.call(
            conn.stub().VerifyAudit, operator_pb2.VerifyAuditRequest(checkpoints=given)
        )
        result["database"] = {
            "ok": not database.problem,
            "entries": database.entries,
            "first_seq": database.first_seq,
            "last_seq": database.last_seq,
            "archived_through": database.archived_through,
            "problem": database.problem,
        }
        result["checkpoints"] = checkpoint_summary(database)
        problems.extend(f"checkpoints: {text}" for text in database.checkpoint_problems)
        if not database.problem:
            archived = (
                f"; seqs 1..{database.archived_through} are archived"
                if database.archived_through
                else ""
            )
            span = f" (seqs {database.first_seq}..{database.last_seq})" if database.entries else ""
            lines.append(f"database: ok, {database.entries} entries{span}{archived}")
            newest = conn.call(conn.stub().ListAudit, operator_pb2.ListAuditRequest(limit=1))
            if newest.entries:
                head = newest.entries[-1]
                result["head"] = {"seq": head.seq, "hash": head.hash}
                lines.append(f"head: {head.seq}:{head.hash}")
            lines.append(checkpoint_line(database))
        else:
            problems.append(f"database: {database.problem}")
        if archive_report is not None and archive_report.ok and database.archived_pins:
            # Checkpoints of entries since archived: the archive files must still have them
            # (a second pass over the files, for just those seqs).
            pinned = dict(parse_expect(tuple(database.archived_pins)))
            in_files = check_archives(list(archives), frozenset(pinned)).hashes
            for seq, digest in sorted(pinned.items()):
                have = in_files.get(seq)
                if have is not None and have != digest:
                    problems.append(
                        f"checkpoints: archived seq {seq} has hash {have[:16]}... in the archive "
                        f"files but a signed checkpoint says {digest[:16]}...: the archive was "
                        "rewritten (or the chain before it was archived)"
                    )
    # Which entries must be looked up in the database: the end of the archives (their link)
    # and any --expect not found in an archive.
    wanted: set[int] = set()
    if database is not None and not database.problem:
        if archive_report is not None and archive_report.ok and archive_report.last_seq:
            if archive_report.last_seq < database.archived_through:
                problems.append(
                    f"the archives end at seq {archive_report.last_seq} but the database was "
                    f"archived through seq {database.archived_through}: give the archive(s) "
                    f"holding seqs {archive_report.last_seq + 1}..{database.archived_through} too"
                )
            else:
                wanted.add(archive_report.last_seq)
        known = archive_report.hashes if archive_report is not None else {}
        wanted.update(seq for seq in expected if seq not in known)
    found = find_in_database(conn, wanted) if wanted else {}
    if archive_report is not None and archive_report.last_seq in wanted:
        seq = archive_report.last_seq
        if found.get(seq) == archive_report.last_hash:
            result["linked"] = True
            lines.append(f"archives link to the database at seq {seq}")
        else:
            result["linked"] = False
            problems.append(
                f"the archives end at seq {seq} with hash {archive_report.last_hash[:16]}... but "
                f"the database has {(found.get(seq) or 'no such entry')[:16]}... there: they are "
                "not this log's, or one side was rewritten"
            )
    for seq, digest in sorted(expected.items()):
        have = (archive_report.hashes if archive_report is not None else {}).get(seq)
        have = have or found.get(seq)
        if have is None:
            if database is not None and database.problem:
                continue  # the database's problem is reported already
            problems.append(
                f"--expect {seq}: no such entry in the database"
                + (" or the archives given" if archives else "")
                + (
                    f" (seqs up to {database.archived_through} are archived: give the archive)"
                    if database is not None and seq <= database.archived_through
                    else ""
                )
            )
        elif have != digest:
            problems.append(
                f"--expect {seq}: the entry now has hash {have[:16]}..., not {digest[:16]}...: "
                "the chain was rewritten after that hash was kept"
            )
        else:
            lines.append(f"seq {seq} still has the expected hash")
    result["ok"] = not problems
    if output == "json":
        emit_json(result)
    else:
        for line in lines:
            click.echo(line)
        for problem in problems:
            click.echo(f"BROKEN: {problem}")
    if problems:
        raise SystemExit(EXIT_BROKEN)
