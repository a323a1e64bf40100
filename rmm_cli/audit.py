"""`rmm audit`: the record of what operators did, hash-chained so edits show."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from rmm_cli.audit_check import (
    EXIT_BROKEN,
    VerifyFacts,
    archived_pins,
    check_archives,
    judge,
    parse_expect,
    seqs_to_look_up,
)
from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import OUTPUT_OPTION, emit_json, iso, print_table, shown
from rmm_common.audit_chain import AuditRecord
from rmm_common.durations import parse_duration
from rmm_common.errors import InvalidArgument
from rmm_proto import operator_pb2

# A bare number this large is a unix time, not a number of seconds ago (2001-09-09 onwards).
UNIX_TIME_FLOOR = 1e9


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


@click.group()
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
@click.option(
    "--agent",
    default="",
    help="Only entries about this agent: its id, the start of it, or host=NAME (a hostname).",
)
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
        # Targets, outcomes and details quote what operators typed and agents reported: shown
        # as text, never read as rich markup or terminal escapes.
        table.add_row(
            str(entry.seq),
            iso(entry.at),
            shown(entry.operator),
            shown(entry.action),
            shown(entry.target or "-"),
            shown(entry.outcome),
            shown(details if len(details) <= 80 else details[:77] + "..."),
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
    archive_report = check_archives(list(archives), frozenset(expected)) if archives else None
    database: operator_pb2.VerifyAuditResponse | None = None
    head: tuple[int, str] | None = None
    pinned_in_files: dict[int, str] = {}
    if use_server:
        database = conn.call(
            conn.stub().VerifyAudit, operator_pb2.VerifyAuditRequest(checkpoints=given)
        )
        if not database.problem:
            newest = conn.call(conn.stub().ListAudit, operator_pb2.ListAuditRequest(limit=1))
            if newest.entries:
                head = (newest.entries[-1].seq, newest.entries[-1].hash)
        if pinned := archived_pins(database, archive_report):
            pinned_in_files = check_archives(list(archives), frozenset(pinned)).hashes
    wanted = seqs_to_look_up(expected, archive_report, database)
    findings = judge(
        VerifyFacts(
            expected=expected,
            archive_report=archive_report,
            database=database,
            head=head,
            pinned_in_files=pinned_in_files,
            found=find_in_database(conn, wanted) if wanted else {},
        )
    )
    if output == "json":
        emit_json(findings.result)
    else:
        for line in findings.lines:
            click.echo(line)
        for problem in findings.problems:
            click.echo(f"BROKEN: {problem}")
    if findings.problems:
        raise SystemExit(findings.exit_code)
