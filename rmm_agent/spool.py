"""The agent's spool: reports not yet acknowledged, on disk, oldest first, bounded.

The collector thread adds each report (serialized protobuf, zlib level 1 like the server's copy:
about a third of the bytes, so the byte bound holds three times the hours) before the sender
sees it; the sender
reads what is pending in sequence order and the server's acknowledgements remove it. A report
survives a restart, a SIGKILL or a reboot until the server has stored it. When the spool reaches
its bound (count or bytes) the oldest reports go first, and the number dropped is kept in the
spool itself, so it is cumulative since the spool was created (in practice: since enrollment).
A report evicted after the sender put it on the stream may be stored already: it is held aside
(its number only) and counted as dropped only if the stream ends without its acknowledgement.

When the disk fails (read-only, full, a damaged file) the spool logs one clear error naming the
file and the fix, keeps reports in memory (bounded) and tries the disk again every
`retry_seconds`; what waits in memory moves to disk once it works again. Command results are not
here: rmm_agent/commands/history.py keeps each until the server acknowledges it, never dropped.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from pathlib import Path

from google.protobuf.message import DecodeError

from rmm_agent.config import DEFAULT_SPOOL_MAX_BYTES, DEFAULT_SPOOL_MAX_REPORTS
from rmm_proto import agent_pb2

log = logging.getLogger(__name__)

SPOOL_FILE = "spool.sqlite3"
# While the disk fails: what the agent kept in memory before it had a spool.
MEMORY_MAX_REPORTS = 2000
RETRY_SECONDS = 60.0
# Deleting acknowledged reports is batched: a redelivery after a crash costs the server a
# duplicate check, while a commit per acknowledgement would cost an fsync each during a catch-up.
ACK_FLUSH_SECONDS = 1.0
# Free pages above this are returned to the file system once the spool is drained.
VACUUM_FREE_PAGES = 256
BUSY_TIMEOUT_SECONDS = 2.0
# Reports evicted while on the stream, waiting for their acknowledgement: past this many, the
# oldest are counted as dropped at once (the memory held for them stays small).
IN_DOUBT_MAX = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    sequence INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_CORRUPT = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
_FULL = frozenset({"SQLITE_FULL"})
_READ_ONLY = frozenset({"SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"})
_BUSY = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})


def _error_name(exc: BaseException) -> str:
    """SQLITE_FULL, SQLITE_READONLY... for an SQLite error (extended codes folded), else ''."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    if not name and isinstance(exc, sqlite3.DatabaseError):
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return "SQLITE_CORRUPT"
    # Extended names (SQLITE_READONLY_DIRECTORY, SQLITE_IOERR_WRITE...) share their base's fix.
    base = "_".join(name.split("_")[:2])
    return base


def is_corrupt(exc: BaseException) -> bool:
    """Say whether `exc` means the spool file is damaged (not merely unwritable)."""
    return _error_name(exc) in _CORRUPT


def fix_for(exc: BaseException, path: Path) -> str:
    """Say what a person should do about `exc` on the spool at `path`."""
    name = _error_name(exc)
    code = exc.errno if isinstance(exc, OSError) else None
    if name in _FULL or code in (errno.ENOSPC, errno.EDQUOT):
        return f"free space on the file system that holds {path.parent}"
    if name in _READ_ONLY or code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR):
        return (
            f"make {path.parent} a writable directory for the agent's user "
            "(is the file system mounted read-only, or the file or directory immutable?)"
        )
    if name in _BUSY:
        return f"another process holds {path}: is a second agent running with this --state-dir?"
    if name in _CORRUPT:
        return f"the file is damaged; it is moved aside to {path.name}.corrupt"
    return (
        f"check that the file system that holds {path.parent} is writable (not read-only, the "
        "file not immutable) and has free space; dmesg may say more"
    )


class Spool:
    """Unacknowledged reports in SQLite at `path`, bounded; falls back to memory if it must."""

    def __init__(
        self,
        path: Path,
        max_reports: int = DEFAULT_SPOOL_MAX_REPORTS,
        max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        retry_seconds: float = RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        damaged_hint: tuple[int, int] | None = None,
    ) -> None:
        """`damaged_hint`: (reports waiting, dropped count) as last recorded outside the file
        (Sequencer.note_spool), counted as lost should the file be found damaged at open."""
        if max_reports < 1 or max_bytes < 1:
            raise ValueError("a spool holds at least one report and one byte")
        self.path = path
        self.max_reports = max_reports
        self.max_bytes = max_bytes
        self.retry_seconds = retry_seconds
        self.monotonic = monotonic
        # One lock for the connection and the sender's wait: the collector thread writes, the
        # sender thread reads and acknowledges, and the sender waits here for new reports.
        self.changed = threading.Condition(threading.RLock())
        self.dropped = 0  # reports dropped undelivered, cumulative (see the module docstring)
        self.acked = 0  # the newest sequence the server acknowledged
        self._dropped_unsaved = 0  # drops not yet written to the file
        # Evicted after they were sent on the current stream: stored if acknowledged, dropped if
        # the stream ends first. The file keeps their count ("in_doubt") beside "dropped", so
        # after a crash they count as dropped: the sum of the two is never below the truth.
        self._in_doubt: deque[int] = deque()
        self._counts_unsaved = False  # the file's dropped/in_doubt are behind (still >= truth)
        self._sent = 0  # the newest sequence the sender has read for the current stream
        self._opened = False  # a file was attached once: its in_doubt count was taken
        self._db: sqlite3.Connection | None = None
        self._count = 0  # rows on disk
        self._bytes = 0
        self._last = 0  # the newest sequence ever added or found on disk
        self._acks_flushed = 0  # rows up to this sequence are deleted from disk
        self._flushed_at = -ACK_FLUSH_SECONDS
        # While the disk fails: pending reports, oldest first. `_salvaged` says they include
        # everything that was on disk, so the file's rows are superseded when it works again.
        self._memory: OrderedDict[int, bytes] = OrderedDict()
        self._salvaged = False
        self._retry_at = 0.0
        self._warned_full = False
        self._failing = False
        self._closed = False
        self._damaged_hint = damaged_hint
        with self.changed:
            error = self._attach()
            if error is not None:
                self._enter_memory(error, "open")

    @classmethod
    def in_state_dir(
        cls,
        state_dir: Path,
        max_reports: int,
        max_bytes: int,
        damaged_hint: tuple[int, int] | None = None,
    ) -> Spool:
        """Open (or create) the spool in an agent's state directory."""
        return cls(state_dir / SPOOL_FILE, max_reports, max_bytes, damaged_hint=damaged_hint)

    # --- what the runner calls -----------------------------------------------------------

    @property
    def on_disk(self) -> bool:
        """Say whether reports go to the file (False: to memory, because the disk fails)."""
        return self._db is not None

    @property
    def last_sequence(self) -> int:
        """The newest sequence this spool has seen (so a lost counter is never reused)."""
        return self._last

    @property
    def pending_estimate(self) -> int:
        """How many reports wait, from counters (no query: called after every report). On disk
        it can count a few just acknowledged, not yet deleted, as waiting."""
        if self._db is None:
            return len(self._memory)
        return max(0, self._count - max(0, self.acked - self._acks_flushed))

    def __len__(self) -> int:
        """How many reports wait for the server."""
        with self.changed:
            if self._db is None:
                return len(self._memory)
            try:
                (count,) = self._db.execute(
                    "SELECT COUNT(*) FROM reports WHERE sequence > ?", (self.acked,)
                ).fetchone()
            except (sqlite3.Error, OSError) as exc:
                self._enter_memory(exc, "read")
                return len(self._memory)
            return int(count)

    def add(self, report: agent_pb2.Report) -> None:
        """Keep `report` until the server acknowledges it (the oldest go first when full)."""
        body = zlib.compress(report.SerializeToString(), 1)
        sequence = report.sequence
        with self.changed:
            if self._db is None and not self._closed and self.monotonic() >= self._retry_at:
                self._retry_disk()
            if self._db is not None:
                try:
                    self._add_to_disk(self._db, sequence, body)
                except (sqlite3.Error, OSError) as exc:
                    self._enter_memory(exc, "write to")
                    self._add_to_memory(sequence, body)
            else:
                self._add_to_memory(sequence, body)
            self._last = max(self._last, sequence)
            self.changed.notify_all()

    def ack(self, sequence: int) -> None:
        """Forget every report up to and including `sequence`: the server stored them."""
        with self.changed:
            if sequence <= self.acked:
                return
            self.acked = sequence
            self._warned_full = False
            if self._in_doubt and self._in_doubt[0] <= sequence:
                while self._in_doubt and self._in_doubt[0] <= sequence:
                    self._in_doubt.popleft()  # the server stored it: not dropped
                self._counts_unsaved = True
            while self._memory and next(iter(self._memory)) <= sequence:
                self._memory.popitem(last=False)
            if self._db is not None and self.monotonic() - self._flushed_at >= ACK_FLUSH_SECONDS:
                try:
                    with _transaction(self._db):
                        count, size = self._flush_acks(self._db)
                    self._flushed(count, size)
                    self._vacuum_if_drained(self._db)
                except (sqlite3.Error, OSError) as exc:
                    self._enter_memory(exc, "update")

    def pending(self, after: int = 0, limit: int = 64) -> list[agent_pb2.Report]:
        """Return up to `limit` waiting reports newer than `after`, oldest first."""
        with self.changed:
            floor = max(after, self.acked)
            for _attempt in range(2):  # a damaged file is replaced at once: read the new one
                if self._db is None:
                    break
                try:
                    rows = self._db.execute(
                        "SELECT sequence, body FROM reports WHERE sequence > ?"
                        " ORDER BY sequence LIMIT ?",
                        (floor, limit),
                    ).fetchall()
                except (sqlite3.Error, OSError) as exc:
                    self._enter_memory(exc, "read")
                else:
                    return self._decode_rows(rows)
            rows = [(seq, body) for seq, body in self._memory.items() if seq > floor][:limit]
            return self._decode_rows(rows)

    def mark_sent(self, sequence: int) -> None:
        """Say that the sender has read every waiting report up to `sequence` for the current
        stream (call it holding `changed`, with the same read, so no eviction comes between)."""
        self._sent = max(self._sent, sequence)

    def stream_ended(self) -> None:
        """The stream ended: reports evicted after they were sent on it and not acknowledged
        may never have been stored, so they count as dropped now; the next stream sends afresh."""
        with self.changed:
            self._sent = 0
            if not self._in_doubt:
                return
            lost = len(self._in_doubt)
            self._in_doubt.clear()
            self.dropped += lost
            self._counts_unsaved = True
            log.warning(
                "%d report(s) evicted from the full spool %s while on their way to the server "
                "were not acknowledged before the stream ended: counted as dropped, %d in all",
                lost,
                self.path,
                self.dropped,
            )

    def _decode_rows(self, rows: list[tuple[int, bytes]]) -> list[agent_pb2.Report]:
        """Parse stored reports; one that cannot be read is dropped, counted and said."""
        reports: list[agent_pb2.Report] = []
        for sequence, body in rows:
            try:
                reports.append(agent_pb2.Report.FromString(zlib.decompress(body)))
            except (zlib.error, DecodeError) as exc:
                # Resending it would fail the stream every time and hold up every later report.
                log.error(
                    "report %d in the spool %s cannot be read (%s): dropped",
                    sequence,
                    self.path,
                    exc,
                )
                self._drop_unreadable(sequence)
        return reports

    def _drop_unreadable(self, sequence: int) -> None:
        self._memory.pop(sequence, None)
        self.dropped += 1
        self._dropped_unsaved += 1
        if self._db is not None:
            try:
                with _transaction(self._db):
                    gone, size = self._db.execute(
                        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM reports WHERE sequence = ?",
                        (sequence,),
                    ).fetchone()
                    self._db.execute("DELETE FROM reports WHERE sequence = ?", (sequence,))
                    self._save_counts(self._db)
                self._dropped_unsaved = 0
                self._counts_unsaved = False
                self._count, self._bytes = self._count - int(gone), self._bytes - int(size)
            except (sqlite3.Error, OSError) as exc:
                self._enter_memory(exc, "update")

    def wake(self) -> None:
        """Wake whoever waits on `changed` (a stop, a new stream)."""
        with self.changed:
            self.changed.notify_all()

    def close(self) -> None:
        """Write what is acknowledged and dropped, and close the file."""
        with self.changed:
            self.stream_ended()  # what is still in doubt is counted, as a crash would
            if self._db is not None:
                try:
                    with _transaction(self._db):
                        self._flush_acks(self._db)
                        self._save_counts(self._db)
                except (sqlite3.Error, OSError) as exc:
                    log.warning("cannot update the report spool %s on close: %s", self.path, exc)
                self._close_db()
            self._closed = True
            self.changed.notify_all()

    # --- disk ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            # Created here, not by SQLite, so it is private from the first byte; SQLite gives
            # its -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            # One process uses the spool: an exclusive lock keeps a second agent on the same
            # state directory out, and WAL then needs no -shm file mapped into memory (whose
            # write faults would kill the agent with SIGBUS on a file that turned unwritable).
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            # A new file only: the freed pages of a drained backlog go back to the file system.
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.execute("PRAGMA journal_mode = WAL")
            # A report is on disk when add() returns, even across a power cut: one fsync per
            # report, once per interval; acknowledgements are batched (ACK_FLUSH_SECONDS).
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA journal_size_limit = 4194304")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _attach(self) -> BaseException | None:
        """Open the file and move what waits in memory into it; return the error if it fails."""
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            acked = max(self.acked, int(meta.get("acked", 0)))
            # A new file after a damaged one starts at 0: the count in memory is the truth then.
            dropped = max(int(meta.get("dropped", 0)) + self._dropped_unsaved, self.dropped)
            if not self._opened:  # in doubt when the last process ended: never settled
                dropped += int(meta.get("in_doubt", 0))
            with _transaction(db):
                if self._memory:
                    if self._salvaged:
                        db.execute("DELETE FROM reports")
                    else:  # the file's older reports were never read: keep those still due
                        db.execute(
                            "DELETE FROM reports WHERE sequence <= ? OR sequence >= ?",
                            (acked, next(iter(self._memory))),
                        )
                    db.executemany(
                        "INSERT OR REPLACE INTO reports (sequence, size, body) VALUES (?, ?, ?)",
                        [(s, len(b), b) for s, b in self._memory.items() if s > acked],
                    )
                else:
                    db.execute("DELETE FROM reports WHERE sequence <= ?", (acked,))
                count, size, last = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(MAX(sequence), 0)"
                    " FROM reports"
                ).fetchone()
                evicted, count, size = self._evict(db, count, size, 0, 0)
                unsent, sent = self._split(evicted)
                dropped += unsent
                _set_counts(db, dropped, len(self._in_doubt) + len(sent))
                _set_meta(db, "acked", acked)
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            return exc
        moved = len(self._memory)
        self._db = db
        self.acked = self._acks_flushed = acked
        self.dropped = dropped
        self._dropped_unsaved = 0
        self._counts_unsaved = False
        self._opened = True
        self._hold(sent)
        self._count, self._bytes = int(count), int(size)
        self._last = max(self._last, int(last), acked)
        self._memory.clear()
        self._salvaged = False
        if self._failing:
            self._failing = False
            log.warning(
                "the report spool %s works again: %d reports that waited in memory are on disk",
                self.path,
                moved,
            )
        return None

    def _add_to_disk(self, db: sqlite3.Connection, sequence: int, body: bytes) -> None:
        with _transaction(db):
            count, size = self._flush_acks(db)
            evicted, count, size = self._evict(db, count, size, 1, len(body))
            db.execute(
                "INSERT OR REPLACE INTO reports (sequence, size, body) VALUES (?, ?, ?)",
                (sequence, len(body), body),
            )
            unsent, sent = self._split(evicted) if evicted else (0, [])
            if evicted:
                _set_counts(db, self.dropped + unsent, len(self._in_doubt) + len(sent))
        # Committed: only now do the counters move.
        self._flushed(count + 1, size + len(body))
        if evicted:
            self._dropped_unsaved = 0
            self._counts_unsaved = False
            self._take_evicted(unsent, sent)

    def _flush_acks(self, db: sqlite3.Connection) -> tuple[int, int]:
        """Delete acknowledged rows (inside a transaction); return the rows and bytes left."""
        count, size = self._count, self._bytes
        if self.acked > self._acks_flushed:
            gone, gone_bytes = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM reports WHERE sequence <= ?",
                (self.acked,),
            ).fetchone()
            db.execute("DELETE FROM reports WHERE sequence <= ?", (self.acked,))
            _set_meta(db, "acked", self.acked)
            count, size = count - int(gone), size - int(gone_bytes)
        if self._counts_unsaved or self._dropped_unsaved:
            self._save_counts(db)
        return count, size

    def _flushed(self, count: int, size: int) -> None:
        """Record that a transaction that flushed acknowledgements committed."""
        self._count, self._bytes = count, size
        self._acks_flushed = self.acked
        self._flushed_at = self.monotonic()
        self._dropped_unsaved = 0  # _flush_acks wrote the counts if they were behind
        self._counts_unsaved = False

    def _evict(
        self, db: sqlite3.Connection, count: int, size: int, adding: int, adding_bytes: int
    ) -> tuple[list[int], int, int]:
        """Delete the oldest rows until `adding` more fit; return (their sequences, count,
        size)."""
        evicted: list[int] = []
        while count > 0 and (
            count + adding > self.max_reports or size + adding_bytes > self.max_bytes
        ):
            over = max(1, count + adding - self.max_reports)
            rows = db.execute(
                "SELECT sequence, size FROM reports ORDER BY sequence LIMIT ?", (over,)
            ).fetchall()
            if not rows:
                break
            db.execute("DELETE FROM reports WHERE sequence <= ?", (rows[-1][0],))
            evicted.extend(row[0] for row in rows)
            count -= len(rows)
            size -= sum(row[1] for row in rows)
        return evicted, count, size

    def _save_counts(self, db: sqlite3.Connection) -> None:
        """Write dropped and in-doubt (inside a transaction); always the two together."""
        _set_counts(db, self.dropped, len(self._in_doubt))

    def _split(self, evicted: list[int]) -> tuple[int, list[int]]:
        """Return how many of the evicted `sequences` were never sent (dropped now), and those
        sent on the current stream (in doubt until acknowledged or the stream ends)."""
        sent = [seq for seq in evicted if self.acked < seq <= self._sent]
        gone = sum(1 for seq in evicted if seq <= self.acked)  # stored: neither
        return len(evicted) - len(sent) - gone, sent

    def _take_evicted(self, unsent: int, sent: list[int]) -> None:
        """Count what an eviction dropped and hold what it put in doubt (once committed)."""
        if unsent:
            self.dropped += unsent
            self._say_full(unsent)
        self._hold(sent)

    def _hold(self, sent: list[int]) -> None:
        self._in_doubt.extend(sent)
        while len(self._in_doubt) > IN_DOUBT_MAX:
            self._in_doubt.popleft()  # too many to wait for: counted as lost, like before
            self.dropped += 1
            self._counts_unsaved = True

    def _vacuum_if_drained(self, db: sqlite3.Connection) -> None:
        if self._count == 0:
            (free,) = db.execute("PRAGMA freelist_count").fetchone()
            if free > VACUUM_FREE_PAGES:
                db.execute("PRAGMA incremental_vacuum")

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    # --- memory, while the disk fails ----------------------------------------------------

    def _add_to_memory(self, sequence: int, body: bytes) -> None:
        self._memory[sequence] = body
        limit = min(self.max_reports, MEMORY_MAX_REPORTS)
        evicted: list[int] = []
        size = sum(len(b) for b in self._memory.values())
        while len(self._memory) > 1 and (len(self._memory) > limit or size > self.max_bytes):
            old_sequence, old = self._memory.popitem(last=False)
            size -= len(old)
            evicted.append(old_sequence)
        if evicted:
            self._evicted_from_memory(evicted)

    def _evicted_from_memory(self, evicted: list[int]) -> None:
        unsent, sent = self._split(evicted)
        self._dropped_unsaved += unsent
        self._counts_unsaved = True
        self._take_evicted(unsent, sent)

    def _enter_memory(self, exc: BaseException, doing: str) -> None:
        """The disk failed: keep what it holds in memory, say why and how to fix it."""
        waiting: int | None = None  # reports on disk not yet acknowledged, when known
        salvaged = 0
        if self._db is not None:
            waiting = self.pending_estimate
            salvaged = self._salvage(self._db)
            self._close_db()
        elif self._damaged_hint is not None:
            # Found damaged at open: nothing was read; what the file held was recorded outside.
            waiting, hint_dropped = self._damaged_hint
            self.dropped = max(self.dropped, hint_dropped)
        self._damaged_hint = None  # a later failure is measured from this process's counters
        self._retry_at = self.monotonic() + self.retry_seconds
        if is_corrupt(exc):
            aside = self._move_aside()
            if waiting is None:
                lost = "an unknown number of reports in it are lost (no record of how many)"
            else:
                count = max(0, waiting - salvaged)
                # Counted as dropped like any report that will never reach the server, so the
                # loss shows in dropped_reports (docs/reliability.md).
                self.dropped += count
                self._dropped_unsaved += count
                lost = (
                    f"{salvaged} reports in it were read back; {count} could not be and are lost "
                    f"(counted in dropped_reports, {self.dropped} in all)"
                )
            log.error(
                "the report spool %s is damaged (%s): %s; %s",
                self.path,
                exc,
                f"moved it to {aside} and started a new one" if aside else "cannot move it",
                lost,
            )
            if aside is not None and self._attach() is None:
                return
        if not self._failing:
            # Once a failure: retries that fail again are logged at debug level.
            self._failing = True
            log.error(
                "cannot %s the report spool %s: %s; %s. Until then up to %d reports wait in "
                "memory and the agent tries the disk again every %gs",
                doing,
                self.path,
                exc,
                fix_for(exc, self.path),
                min(self.max_reports, MEMORY_MAX_REPORTS),
                self.retry_seconds,
            )

    def _salvage(self, db: sqlite3.Connection) -> int:
        """Read what waits on disk into memory, as far as the file can be read; return how many
        reports were read."""
        rows: list[tuple[int, bytes]] = []
        complete = False
        with contextlib.suppress(sqlite3.Error, OSError):
            cursor = db.execute(
                "SELECT sequence, body FROM reports WHERE sequence > ? ORDER BY sequence",
                (self.acked,),
            )
            rows.extend((int(s), bytes(b)) for s, b in cursor)
            complete = True
        merged = dict(rows)
        merged.update(self._memory)
        self._memory = OrderedDict(sorted(merged.items()))
        self._salvaged = complete
        limit = min(self.max_reports, MEMORY_MAX_REPORTS)
        evicted: list[int] = []
        while len(self._memory) > limit:
            evicted.append(self._memory.popitem(last=False)[0])
        if evicted:
            self._evicted_from_memory(evicted)
        return len(rows)

    def _retry_disk(self) -> None:
        error = self._attach()
        if error is not None:
            self._retry_at = self.monotonic() + self.retry_seconds
            log.debug("the report spool %s still fails: %s", self.path, error)

    def _move_aside(self) -> Path | None:
        aside = self.path.with_name(self.path.name + ".corrupt")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                # A stale WAL beside a new file would be replayed into it: it goes too.
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
        except OSError as exc:
            log.error("cannot move the damaged report spool %s aside: %s", self.path, exc)
            return None
        return aside

    def _say_full(self, evicted: int) -> None:
        if not self._warned_full:
            self._warned_full = True
            log.warning(
                "the report spool %s reached its bound (%d reports or %.1f MiB): dropped the "
                "oldest %d report(s), %d in all; they are lost. The server has not acknowledged "
                "reports for a while; if that is normal here, raise spool_max_reports or "
                "spool_max_bytes in the agent's configuration",
                self.path,
                self.max_reports,
                self.max_bytes / (1024 * 1024),
                evicted,
                self.dropped,
            )


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _set_meta(db: sqlite3.Connection, key: str, value: int) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _set_counts(db: sqlite3.Connection, dropped: int, in_doubt: int) -> None:
    """Write the dropped count and how many evicted reports wait for their acknowledgement."""
    _set_meta(db, "dropped", dropped)
    _set_meta(db, "in_doubt", in_doubt)
