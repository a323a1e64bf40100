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
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from json.encoder import encode_basestring as _string
from typing import TYPE_CHECKING, Any

from rmm_common.errors import ConfigError, InvalidArgument
from rmm_server.audit_checkpoints import Checkpoint, CheckpointLog, CheckpointSet, PinCheck

if TYPE_CHECKING:  # the command line imports this module without the server's dependencies
    from rmm_server.storage.audit import AuditStore

log = logging.getLogger(__name__)
GENESIS_HASH = "0" * 64
# The lengths of audit_log's operator, action and target columns (rmm_server/storage/schema.py).
OPERATOR_CHARS, ACTION_CHARS, TARGET_CHARS = 200, 100, 400
ENTRY_FIELDS = (
    "seq",
    "at",
    "operator",
    "action",
    "target",
    "details_json",
    "outcome",
    "prev_hash",
    "hash",
)
# How far from its position an entry's original seq is searched for when its hash does not match:
# enough to tell "moved" or "entries inserted before it" from "edited" for any realistic edit.
MOVED_SEARCH = 2000


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit entry as stored; `hash` covers every other field."""

    seq: int
    at: float
    operator: str
    action: str
    target: str
    details_json: str
    outcome: str
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        """Return the hash this entry's fields give (equal to `hash` unless it was changed)."""
        return entry_hash(
            self.seq,
            self.at,
            self.operator,
            self.action,
            self.target,
            self.details_json,
            self.outcome,
            self.prev_hash,
        )

    def to_json(self) -> dict[str, Any]:
        """Return the entry as a JSON object (one line of an export or archive file)."""
        return {name: getattr(self, name) for name in ENTRY_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> AuditRecord:
        """Read an entry from a JSON object; raise ValueError naming `where` and the field."""
        missing = [name for name in ENTRY_FIELDS if name not in data]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
            seq = data["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise ValueError(f"seq must be a positive integer, not {seq!r}")
            at = data["at"]
            if not isinstance(at, (int, float)) or isinstance(at, bool):
                raise ValueError(f"at must be a number, not {at!r}")
            strings = {}
            for name in ENTRY_FIELDS[2:]:
                value = data[name]
                if not isinstance(value, str):
                    raise ValueError(f"{name} must be a string, not {value!r}")
                strings[name] = value
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        return cls(seq=seq, at=float(at), **strings)


def canonical_bytes(
    seq: int,
    at: float,
    operator: str,
    action: str,
    target: str,
    details_json: str,
    outcome: str,
    prev_hash: str,
) -> bytes:
    """Return the exact bytes an entry's hash is taken over.

    The JSON object {seq, at, operator, action, target, details_json, outcome, prev_hash} with
    sorted keys and no whitespace, non-ASCII characters as themselves, in UTF-8: what
    `json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` gives, written
    out by hand because verify spends most of its time here. `at` is a string with exactly six
    decimals, so that no language's float formatting can change the bytes (docs/audit.md).
    """
    return (
        f'{{"action":{_string(action)},"at":"{at:.6f}","details_json":{_string(details_json)},'
        f'"operator":{_string(operator)},"outcome":{_string(outcome)},'
        f'"prev_hash":{_string(prev_hash)},"seq":{int(seq)},"target":{_string(target)}}}'
    ).encode()


def entry_hash(
    seq: int,
    at: float,
    operator: str,
    action: str,
    target: str,
    details_json: str,
    outcome: str,
    prev_hash: str,
) -> str:
    """Return the hex SHA-256 of an entry's canonical encoding."""
    return hashlib.sha256(
        canonical_bytes(seq, at, operator, action, target, details_json, outcome, prev_hash)
    ).hexdigest()


def details_to_json(details: Mapping[str, Any]) -> str:
    """Return `details` as the compact, key-sorted JSON object the log stores."""
    return json.dumps(
        dict(details),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=str,
    )


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
class Problem:
    """The first break in a chain: at which entry and what is wrong."""

    seq: int
    kind: str  # edited, deleted, inserted, reordered, unlinked, anchor
    message: str


class ChainChecker:
    """Check entries fed in seq order against each other and the point the chain starts from.

    `after_seq`/`after_hash` are where the chain starts: 0 and the genesis hash, an archive
    anchor, or the last entry of an earlier archive file. `origin` names that start in messages.
    """

    def __init__(self, after_seq: int, after_hash: str, origin: str) -> None:
        self.after_seq = after_seq
        self.after_hash = after_hash
        self.origin = origin
        self.count = 0
        self.first_seq = 0
        self.last_seq = after_seq
        self.last_hash = after_hash
        self.problem: Problem | None = None

    def check(self, entry: AuditRecord) -> Problem | None:
        """Check the next entry; return (and keep) the first problem found."""
        if self.problem is not None:
            return self.problem
        self.problem = self._problem_with(entry)
        if self.problem is None:
            self.count += 1
            self.first_seq = self.first_seq or entry.seq
            self.last_seq = entry.seq
            self.last_hash = entry.hash
        return self.problem

    def check_all(self, entries: Iterable[AuditRecord]) -> Problem | None:
        """Check entries until the first problem."""
        for entry in entries:
            if self.check(entry) is not None:
                break
        return self.problem

    def _problem_with(self, entry: AuditRecord) -> Problem | None:
        expected = self.last_seq + 1
        seq = entry.seq
        if seq > expected:
            span = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}..{seq - 1}"
            return Problem(
                expected,
                "deleted",
                f"{span} missing: the entry after seq {self.last_seq} is seq {seq} "
                "(entries were deleted)",
            )
        if seq < expected:
            return Problem(
                seq,
                "reordered",
                f"seq {seq} comes after seq {self.last_seq}: entries are out of order "
                "(reordered or duplicated)",
            )
        if entry.computed_hash() != entry.hash:
            written_as = _original_seq(entry)
            if written_as is None:
                return Problem(
                    seq,
                    "edited",
                    f"seq {seq} was edited: its fields no longer match its hash "
                    f"(at {entry.at:.6f}, operator {entry.operator!r}, action {entry.action!r})",
                )
            if written_as < seq:
                return Problem(
                    seq,
                    "inserted",
                    f"seq {seq} holds the entry written as seq {written_as}: "
                    f"{seq - written_as} entr{'y was' if seq - written_as == 1 else 'ies were'} "
                    "inserted before it, or the log was reordered",
                )
            return Problem(
                seq,
                "reordered",
                f"seq {seq} holds the entry written as seq {written_as}: the log was reordered, "
                "or entries before it were deleted and the rest renumbered",
            )
        if entry.prev_hash != self.last_hash:
            if self.count == 0:
                return Problem(
                    seq,
                    "unlinked",
                    f"seq {seq} does not link to {self.origin}: its prev_hash is "
                    f"{entry.prev_hash[:16]}..., the chain needs {self.last_hash[:16]}... "
                    "(the entry or the anchor was changed)",
                )
            return Problem(
                seq,
                "unlinked",
                f"seq {seq} does not link to seq {self.last_seq}: seq {self.last_seq} was "
                "replaced (edited and its hash recomputed) or an entry was inserted before "
                f"seq {seq}",
            )
        return None

    def finish(self, head_seq: int, head_hash: str) -> Problem | None:
        """Check that the chain ended where the database's head row says it does."""
        if self.problem is not None:
            return self.problem
        if self.last_seq < head_seq:
            first = self.last_seq + 1
            span = f"seq {first}" if first == head_seq else f"seqs {first}..{head_seq}"
            self.problem = Problem(
                first,
                "deleted",
                f"{span} missing at the end: the log ends at seq {self.last_seq} but its head "
                f"row says seq {head_seq} (the newest entries were deleted)",
            )
        elif self.last_seq == head_seq and self.last_hash != head_hash:
            self.problem = Problem(
                head_seq,
                "edited",
                f"seq {head_seq} was replaced: its hash differs from the one the head row kept",
            )
        return self.problem


def _original_seq(entry: AuditRecord) -> int | None:
    """Return the seq an entry's hash was computed with, when it is near its current one."""
    low = max(1, entry.seq - MOVED_SEARCH)
    for candidate in range(low, entry.seq + MOVED_SEARCH + 1):
        if candidate != entry.seq and replace(entry, seq=candidate).computed_hash() == entry.hash:
            return candidate
    return None


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


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where the database's chain starts (after the archived entries) and where it ends."""

    archived_through: int
    anchor_hash: str
    head_seq: int
    head_hash: str
    archived_at: float | None = None


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
                    self.checkpoints.appended(written[-1].seq, written[-1].hash, len(written))
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
            return self.checkpoints.checkpoint(
                anchor.head_seq, anchor.head_hash, anchor.archived_through, anchor.anchor_hash
            )

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
        if through is None:  # an archive's walk stops short of the head on purpose
            pins.finish(checker.last_seq, anchor.head_seq, problem is None)
        return replace(
            result,
            ok=result.ok and not pins.problems,
            checkpoint_problems=tuple(pins.problems),
            checkpoints=len(found.checkpoints),
            checkpoints_checked=pins.checked,
            newest_checkpoint=found.newest(),
            archived_pins=tuple(pins.archived),
            checkpoint_sources=tuple(found.sources),
        )

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
