"""The audit chain's contract: what an entry is, the bytes its hash covers, how a chain is checked.

Shared by the server, which writes and verifies the chain, and the `rmm` command line, which
checks an exported or archived chain offline with the same code: standard library only.
Each entry's hash covers its fields and the previous entry's hash, so changing, removing,
inserting or reordering an entry breaks the chain at that entry; `ChainChecker` names the first
break (docs/audit.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from json.encoder import encode_basestring as _string
from typing import Any

__all__ = [
    "ENTRY_FIELDS",
    "GENESIS_HASH",
    "AuditRecord",
    "ChainChecker",
    "Problem",
    "canonical_bytes",
    "details_to_json",
    "entry_hash",
]

GENESIS_HASH = "0" * 64
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
