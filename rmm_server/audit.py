"""The append-only, hash-chained audit log: who did what to which thing, and how it ended.

Each entry's hash covers its fields and the previous entry's hash, so changing, removing,
inserting or reordering an entry breaks the chain at that entry. `ChainChecker` walks a chain and
names the first break; it needs nothing but the standard library, so the `rmm` command line uses
the same code to check an archive file offline. The chain alone cannot show a rewrite with every
hash recomputed, nor a rollback: `audit_checkpoints` signs the head outside the database, and
`verify` checks the chain against those checkpoints too.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rmm_common.audit_chain import (
    GENESIS_HASH,
    AuditRecord,
    ChainChecker,
    Problem,
    details_to_json,
    entry_hash,
)
from rmm_common.errors import ConfigError, InvalidArgument, StorageError
from rmm_server.audit_checkpoints import (
    Checkpoint,
    CheckpointLog,
    CheckpointSet,
    PinCheck,
    file_rollback,
)
from rmm_server.storage.audit import Anchor, AuditStore, WrittenCheckpoint

log = logging.getLogger(__name__)
# The lengths of audit_log's operator, action and target columns (rmm_server/storage/schema.py).
OPERATOR_CHARS, ACTION_CHARS, TARGET_CHARS = 200, 100, 400


def _valid_text(text: str) -> str:
    """Return `text` as valid Unicode: a lone surrogate (from a file name decoded with
    surrogateescape, say) could be neither hashed as UTF-8 nor stored."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _fit(text: str, limit: int) -> str:
    """Return valid Unicode that fits its column: PostgreSQL refuses a longer value (SQLite
    would keep it), and an entry must be written whatever a request named."""
    text = _valid_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What a walk of the chain found."""

    ok: bool
    entries: int
    first_seq: int
    last_seq: int
    last_hash: str
    archived_through: int
    anchor_hash: str
    problem: Problem | None = None
    # What the signed checkpoints kept outside the database showed (none when there are none).
    checkpoint_problems: tuple[str, ...] = ()
    checkpoints: int = 0  # checkpoints read and correctly signed
    checkpoints_checked: int = 0  # of those, compared with the chain (not in the archives)
    newest_checkpoint: Checkpoint | None = None
    archived_pins: tuple[Checkpoint, ...] = ()  # in the archived range: check the archives
    checkpoint_sources: tuple[str, ...] = ()

    @property
    def problem_text(self) -> str:
        return self.problem.message if self.problem is not None else ""


GENESIS = Anchor(0, GENESIS_HASH, 0, GENESIS_HASH)


class AuditLog:
    """Append to, read, verify and archive the audit log.

    Appends take a process-wide lock around "read the head, insert, move the head" so that seqs
    have no gaps and every entry links to the one before; the storage layer also locks the head
    row, which is what serializes appends across several servers on PostgreSQL.
    """

    def __init__(self, store: AuditStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        # Signed heads kept outside the database (set by the server once its key is loaded).
        self.checkpoints: CheckpointLog | None = None
        self._append_lock = threading.Lock()
        # Verify and archive exclude each other: an archive that deletes entries under a running
        # verify would look like deleted entries to it.
        self._walk_lock = threading.Lock()
        # Whether this process compared its checkpoint file with the database's record yet.
        self._file_checked = False

    def append(
        self,
        operator: str,
        action: str,
        target: str,
        details: Mapping[str, Any],
        outcome: str,
    ) -> AuditRecord:
        """Write one entry and return it. Thread-safe; blocks for one small transaction."""
        return self.append_many([(operator, action, target, details, outcome)])[0]

    def append_many(
        self, entries: Sequence[tuple[str, str, str, Mapping[str, Any], str]]
    ) -> builtins.list[AuditRecord]:
        """Write several (operator, action, target, details, outcome) entries in one
        transaction, in order; what a fan-out to a thousand agents needs."""
        cleaned = [
            (
                _fit(operator, OPERATOR_CHARS),
                _fit(action, ACTION_CHARS),
                _fit(target, TARGET_CHARS),
                _valid_text(details_to_json(details)),
                _valid_text(outcome),
            )
            for operator, action, target, details, outcome in entries
        ]
        with self._append_lock:
            at = round(self.clock(), 6)

            def maker(
                fields: tuple[str, str, str, str, str],
            ) -> Callable[[int, str], AuditRecord]:
                operator, action, target, details_json, outcome = fields

                def make(seq: int, prev_hash: str) -> AuditRecord:
                    digest = entry_hash(
                        seq, at, operator, action, target, details_json, outcome, prev_hash
                    )
                    return AuditRecord(
                        seq, at, operator, action, target, details_json, outcome, prev_hash, digest
                    )

                return make

            written = self.store.append_many([maker(fields) for fields in cleaned])
            if written and self.checkpoints is not None:
                try:
                    self._check_file_once()
                    self._record(
                        self.checkpoints.appended(written[-1].seq, written[-1].hash, len(written))
                    )
                except OSError as exc:
                    # The entries are committed; the next checkpoint (timer, stop) covers them.
                    log.error(
                        "cannot write an audit checkpoint to %s: %s (fix the data directory's "
                        "permissions or free space)",
                        self.checkpoints.path,
                        exc,
                    )
            return written

    def checkpoint(self) -> Checkpoint | None:
        """Sign the database's current head into the checkpoint file, unless unchanged since
        the last one (at start, every interval, after an archive and at stop)."""
        if self.checkpoints is None:
            return None
        # Under the append lock: an append of this process committing between the read and the
        # write would be signed first, and this older head after it would look like a rollback.
        with self._append_lock:
            anchor = self.store.read_anchor()
            if anchor is None:
                return None  # verify reports the missing row; there is no head to sign
            if not self._file_checked:
                self._file_checked = True
                self.checkpoints.continue_after(anchor.checkpoint)
            written = self.checkpoints.checkpoint(
                anchor.head_seq, anchor.head_hash, anchor.archived_through, anchor.anchor_hash
            )
            self._record(written)
            return written

    def _check_file_once(self) -> None:
        """Compare the checkpoint file with the database's record before this process first
        writes to it (normally done by the checkpoint at start)."""
        if self._file_checked or self.checkpoints is None:
            return
        self._file_checked = True
        anchor = self.store.read_anchor()
        self.checkpoints.continue_after(anchor.checkpoint if anchor is not None else None)

    def _record(self, written: Checkpoint | None) -> None:
        """Remember the line just written in the anchor row: a file later replaced by an older
        copy of itself then lacks it, which verify reports."""
        if written is None:
            return
        try:
            self.store.record_checkpoint(
                WrittenCheckpoint(written.seq, written.at, written.digest, written.replica)
            )
        except StorageError as exc:
            # The line is in the file (and the log); the next checkpoint records again.
            log.error("cannot record the audit checkpoint in the database: %s", exc)

    async def append_async(
        self,
        operator: str,
        action: str,
        target: str,
        details: Mapping[str, Any],
        outcome: str,
    ) -> AuditRecord:
        """`append` from the event loop without blocking it."""
        return await asyncio.to_thread(self.append, operator, action, target, details, outcome)

    def list(
        self, since: float = 0.0, operator: str = "", agent: str = "", limit: int = 100
    ) -> builtins.list[AuditRecord]:
        """Return the newest `limit` entries written at or after `since` by `operator` about
        `agent` (an id or the start of one; empty filters match all), oldest first."""
        return self.store.list(since, operator, agent, limit)

    def prepare(self) -> None:
        """Make the anchor row of a new log (at start-up); warn when it has gone missing."""
        if not self.store.ensure_anchor():
            log.error(
                "the audit_anchor row is missing while audit entries exist: the audit tables were "
                "changed outside the server; audited calls will fail to be recorded until it is "
                "restored (docs/audit.md)"
            )

    def page(self, after_seq: int, limit: int) -> builtins.list[AuditRecord]:
        """Return up to `limit` entries after `after_seq`, in seq order."""
        return self.store.page(after_seq, limit)

    def export(self, before: float = 0.0, page: int = 1000) -> Iterator[AuditRecord]:
        """Yield entries in seq order from the oldest kept, stopping at the first one written at
        or after `before` (0: all), so what is yielded is always an unbroken run of the chain."""
        after = 0
        while True:
            entries = self.store.page(after, page)
            for entry in entries:
                if before and entry.at >= before:
                    return
                yield entry
            if len(entries) < page:
                return
            after = entries[-1].seq

    def anchor(self) -> Anchor | None:
        """Return the anchor row, or None when it is missing."""
        return self.store.read_anchor()

    def verify(
        self,
        page: int = 5000,
        given: Sequence[tuple[str, Sequence[str]]] = (),
        found: CheckpointSet | None = None,
    ) -> VerifyResult:
        """Walk the whole chain kept in the database and report the first problem, and check it
        against the signed checkpoints: this server's files and the (source, lines) `given`, or
        the checkpoints `found` (read by the caller: the offline check)."""
        with self._walk_lock:
            # Read before the head: a checkpoint is written after its entries commit, so none
            # read here can be ahead of the head read next (no false "rolled back").
            if found is None and self.checkpoints is not None:
                found = self.checkpoints.read(given)
            return self._verify(page, found=found)

    def _verify(
        self, page: int, through: int | None = None, found: CheckpointSet | None = None
    ) -> VerifyResult:
        anchor = self.store.read_anchor()
        if anchor is None:
            first = self.store.page(0, 1)
            if first:
                missing = Problem(
                    first[0].seq,
                    "anchor",
                    "the audit_anchor row is missing while entries exist: it was deleted "
                    "(restore it from a backup; docs/audit.md)",
                )
                return VerifyResult(False, 0, 0, 0, "", 0, "", missing)
            anchor = GENESIS
        origin = (
            f"the archive anchor (seq {anchor.archived_through})"
            if anchor.archived_through
            else "the start of the log"
        )
        checker = ChainChecker(anchor.archived_through, anchor.anchor_hash, origin)
        pins = (
            PinCheck(found, anchor.archived_through, anchor.anchor_hash)
            if found is not None
            else None
        )
        # Entries past the head read here are appends that happened during the walk.
        end = anchor.head_seq if through is None else through
        after = anchor.archived_through
        while after < end:
            entries = self.store.page(after, page, through=end)
            if not entries:
                break
            broken = checker.check_all(entries) is not None
            if pins is not None:
                for entry in entries:
                    if entry.seq > checker.last_seq:
                        break  # not accepted by the chain check
                    pins.entry(entry.seq, entry.hash)
                    if entry.action == "ArchiveAudit" and entry.outcome == "ok":
                        pins.archive_recorded(entry.details_json)
            if broken:
                break
            after = entries[-1].seq
        problem: Problem | None
        if through is None:
            problem = checker.finish(anchor.head_seq, anchor.head_hash) or self._beyond_head()
        elif checker.problem is None and checker.last_seq < through:
            problem = checker.finish(through, "")
        else:
            problem = checker.problem
        result = VerifyResult(
            ok=problem is None,
            entries=checker.count,
            first_seq=checker.first_seq,
            last_seq=checker.last_seq,
            last_hash=checker.last_hash,
            archived_through=anchor.archived_through,
            anchor_hash=anchor.anchor_hash,
            problem=problem,
        )
        if pins is None or found is None:
            return result
        checkpoint_problems = list(pins.problems)
        if through is None:  # an archive's walk stops short of the head on purpose
            pins.finish(checker.last_seq, anchor.head_seq, problem is None)
            checkpoint_problems = list(pins.problems)
            checkpoint_problems.extend(
                self._file_problems(anchor, checker.count, checker.last_seq, found)
            )
        return replace(
            result,
            ok=result.ok and not checkpoint_problems,
            checkpoint_problems=tuple(checkpoint_problems),
            checkpoints=len(found.checkpoints),
            checkpoints_checked=pins.checked,
            newest_checkpoint=found.newest(),
            archived_pins=tuple(pins.archived),
            checkpoint_sources=tuple(found.sources),
        )

    def _file_problems(
        self, anchor: Anchor, entries: int, last_seq: int, found: CheckpointSet
    ) -> builtins.list[str]:
        """Return what the checkpoint files themselves show: none at all for a chain that has
        entries, or none of the newest line the database records as written (rolled back)."""
        if not found.checkpoints:
            if entries or anchor.archived_through:
                return [_no_checkpoints(anchor, last_seq, found)]
            return []
        own = self.checkpoints.replica if self.checkpoints is not None else None
        rolled_back = file_rollback(anchor.checkpoint, found, own)
        return [rolled_back] if rolled_back is not None else []

    def _beyond_head(self) -> Problem | None:
        # Read the newest seq before the head: a legitimate append moves the head in the same
        # transaction as its insert, so the head read second is never behind it.
        newest = self.store.max_seq()
        anchor = self.store.read_anchor()
        head = anchor.head_seq if anchor is not None else 0
        if newest is not None and newest > head:
            return Problem(
                head + 1,
                "inserted",
                f"seqs {head + 1}..{newest} lie beyond the head row (seq {head}): they were "
                "inserted outside the server",
            )
        return None

    def archive(self, through_seq: int, through_hash: str) -> tuple[int, Anchor]:
        """Delete entries up to `through_seq` once the chain up to it verifies; keep its hash.

        Return how many entries were removed and the new anchor. Raise InvalidArgument (wrong
        seq or hash) or AuditBroken (the chain up to there does not verify).
        """
        if through_seq < 1 or len(through_hash) != 64:
            raise InvalidArgument(
                "archive needs the seq and the 64-hex-digit hash of the last exported entry"
            )
        with self._walk_lock:
            anchor = self.store.read_anchor() or GENESIS
            if through_seq <= anchor.archived_through:
                raise InvalidArgument(
                    f"seq {through_seq} is archived already (the database keeps entries after "
                    f"seq {anchor.archived_through})"
                )
            if through_seq > anchor.head_seq:
                raise InvalidArgument(
                    f"seq {through_seq} does not exist: the newest entry is seq {anchor.head_seq}"
                )
            # Checked against the checkpoints too: archiving a rewritten chain would move the
            # evidence out of the database.
            found = self.checkpoints.read() if self.checkpoints is not None else None
            result = self._verify(5000, through=through_seq, found=found)
            if not result.ok:
                raise AuditBroken(
                    f"refusing to archive: the chain up to seq {through_seq} does not verify: "
                    f"{result.problem_text or result.checkpoint_problems[0]}"
                )
            if result.last_hash != through_hash:
                raise InvalidArgument(
                    f"seq {through_seq} has hash {result.last_hash}, not {through_hash}: export "
                    "again and archive what was exported"
                )
            # Appends wait for the short delete: both write the anchor row, and the archive's
            # reads of it must still hold when it writes.
            with self._append_lock:
                removed = self.store.archive(anchor, through_seq, through_hash, self.clock())
        new_anchor = self.store.read_anchor()
        assert new_anchor is not None  # archive() just wrote it
        try:
            self.checkpoint()  # sign the new anchor: moving it back later then shows
        except OSError as exc:
            log.error("cannot write an audit checkpoint after archiving: %s", exc)
        return removed, new_anchor


class AuditBroken(ConfigError):
    """The chain does not verify, so an operation that needs a sound chain is refused."""


def _no_checkpoints(anchor: Anchor, last_seq: int, found: CheckpointSet) -> str:
    """Say why a chain with entries but no signed checkpoint at all cannot be trusted."""
    where = ", ".join(found.sources) or "no checkpoint file in the data directory"
    return (
        f"the chain reaches seq {max(last_seq, anchor.archived_through)} but no signed "
        f"checkpoint was found ({where}): a server writes one at every start and stop, so the "
        "checkpoint file was deleted or moved, and a rollback or rewrite could not be seen; "
        "verify against a copy kept elsewhere (the server log's 'audit checkpoint' lines: "
        "--checkpoints FILE). A database last written by a release before checkpoints gets its "
        "first one when a server of this release starts"
    )
