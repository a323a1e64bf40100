"""Signed checkpoints of the audit chain's head, kept outside the database.

The chain alone cannot show a rewrite that recomputes every hash from some entry on, nor a tail
deleted with the head row moved back: everything needed for either is in the database. So the
server signs its head (seq, hash and the archive anchor) with its command-signing key, which
lives in the data directory and never in the database, and appends it to an append-only file
there (`audit-checkpoints.log`, one JSON object a line) and to its log (so journald or syslog
keeps a copy). `AuditLog.verify` then checks that every checkpoint still matches the chain: the
entry at its seq must still have its hash (else the chain was rewritten), and the head must not
be behind the newest one (else it was rolled back).

Each line also carries the hash of the line before it in the same file, so removing or
reordering lines inside the file shows too; signing every line means nobody without the key
can add or change one.

What no line can show is the file replaced by an older copy of itself: every line left is
authentic and in order. So the database's anchor row also records the newest line written (its
seq, time, digest and replica): a verify that does not find that line in the replica's file
reports the file rolled back, and a server starting on such a file says so and continues its
chain of lines from the recorded line, not the file's last, so the gap stays visible in the file
itself (`prev` names a line the file lacks) after the database has moved on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from rmm_server.storage.audit import WrittenCheckpoint

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "audit-checkpoints.log"
CHECKPOINT_GLOB = "audit-checkpoints*.log"
# Signed bytes start with this: a NUL first byte makes them unparseable as a protobuf Command,
# so a checkpoint's signature can never pass for a command's (the same key signs both).
CONTEXT = b"\x00rmm audit checkpoint v1\n"
VERSION = 1
# The fields a line's signature covers, in this order in the file (the signature comes last).
SIGNED_FIELDS = (
    "v",
    "seq",
    "hash",
    "at",
    "archived_through",
    "anchor_hash",
    "replica",
    "key",
    "prev",
)
# How many problems with checkpoints one verify reports: after a rewrite every later
# checkpoint disagrees, and the first few say all there is to say.
MAX_PROBLEMS = 20


class PayloadSigner(Protocol):
    """What signs a checkpoint: the server's command signer."""

    public_key: bytes

    def sign_payload(self, payload: bytes) -> bytes: ...


def key_fingerprint(public_key: bytes) -> str:
    """Return the hex SHA-256 of a raw Ed25519 public key (what checkpoints name it by)."""
    return hashlib.sha256(public_key).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed checkpoint: the chain's head and archive anchor as the server saw them."""

    seq: int
    hash: str
    at: float
    archived_through: int
    anchor_hash: str
    replica: str
    key: str  # key_fingerprint of the public key that signs it
    prev: str  # hex SHA-256 of the line before it in its file ("" for the first)
    sig: str = ""  # base64 Ed25519 signature over CONTEXT + payload()
    where: str = ""  # file:line it was read from (not signed)
    digest: str = ""  # line_digest of its line (not signed; what the next line's prev holds)

    def fields(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "seq": self.seq,
            "hash": self.hash,
            "at": f"{self.at:.6f}",
            "archived_through": self.archived_through,
            "anchor_hash": self.anchor_hash,
            "replica": self.replica,
            "key": self.key,
            "prev": self.prev,
        }

    def payload(self) -> bytes:
        """Return the exact bytes the signature covers (after CONTEXT)."""
        return json.dumps(self.fields(), sort_keys=True, separators=(",", ":")).encode()

    def line(self) -> str:
        """Return the checkpoint as one line of a checkpoint file (no newline)."""
        return json.dumps({**self.fields(), "sig": self.sig}, separators=(",", ":"))

    def when(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))


def line_digest(line: str) -> str:
    """Return what the next line's `prev` holds for `line` (its JSON text, stripped)."""
    return hashlib.sha256(line.strip().encode()).hexdigest()


def _json_part(text: str) -> str:
    # A line copied from journald or syslog carries the log's prefix before the object.
    start = text.find('{"')
    return text[start:].strip() if start >= 0 else text.strip()


def parse_line(text: str, where: str) -> Checkpoint:
    """Read one checkpoint line; raise ValueError naming `where` and what is wrong."""
    body = _json_part(text)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"{where}: not a checkpoint (not JSON: {exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: not a checkpoint (not a JSON object)")
    missing = [name for name in (*SIGNED_FIELDS, "sig") if name not in data]
    if missing:
        raise ValueError(f"{where}: not a checkpoint (missing {', '.join(missing)})")
    if data["v"] != VERSION:
        raise ValueError(f"{where}: checkpoint version {data['v']!r}, this release reads {VERSION}")
    ints = {name: data[name] for name in ("seq", "archived_through")}
    strings = {
        name: data[name] for name in ("hash", "at", "anchor_hash", "replica", "key", "prev", "sig")
    }
    for name, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{where}: {name} must be a whole number >= 0, not {value!r}")
    for name, value in strings.items():
        if not isinstance(value, str):
            raise ValueError(f"{where}: {name} must be a string, not {value!r}")
    try:
        at = float(strings["at"])
    except ValueError:
        raise ValueError(f"{where}: at must be a time in seconds, not {strings['at']!r}") from None
    return Checkpoint(
        seq=ints["seq"],
        hash=strings["hash"],
        at=at,
        archived_through=ints["archived_through"],
        anchor_hash=strings["anchor_hash"],
        replica=strings["replica"],
        key=strings["key"],
        prev=strings["prev"],
        sig=strings["sig"],
        where=where,
    )


@dataclass
class CheckpointSet:
    """Checkpoints read from files or lines, with every problem found in reading them."""

    checkpoints: list[Checkpoint] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # When the files were read (unix seconds): a checkpoint the database records as written
    # later is not expected in them.
    read_at: float = field(default_factory=time.time)

    def newest(self) -> Checkpoint | None:
        """Return the checkpoint with the highest seq (the latest written among equals)."""
        return max(self.checkpoints, key=lambda c: (c.seq, c.at), default=None)


def read_lines(lines: Iterable[str], source: str, public_key: bytes, into: CheckpointSet) -> None:
    """Check and collect the checkpoints in `lines` (one file, or lines copied from a log).

    Each line must be this server's, signed with its key; within one replica's lines, each must
    name the line before it (`prev`), so a line removed from the middle or moved shows. Lines
    that are not checkpoints (other log lines, blank) are skipped when they hold no `"sig"`.

    A line whose digest the next, authentic, line of its replica names is authentic too (that
    line's signature covers the digest), so only the newest line of each unbroken run needs its
    signature checked: a verify costs hashing, not one Ed25519 check per line.
    """
    # Imported here: `rmm` (the command line) imports this module's readers without the
    # server's dependencies; only checking signatures needs cryptography.
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PublicKey,
    )

    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    fingerprint = key_fingerprint(public_key)
    into.sources.append(source)
    problems: list[tuple[int, str]] = []
    # (line number, checkpoint, digest); None where a line that claims to be one is unreadable.
    read: list[tuple[int, Checkpoint | None, str]] = []
    for number, text in enumerate(lines, 1):
        if not text.strip() or '"sig"' not in text:
            continue
        where = f"{source}:{number}"
        try:
            parsed = parse_line(text, where)
        except ValueError as exc:
            problems.append((number, str(exc)))
            read.append((number, None, ""))
            continue
        if parsed.key != fingerprint:
            problems.append(
                (
                    number,
                    f"{where}: signed by key {parsed.key[:16]}..., not this server's "
                    f"{fingerprint[:16]}... (a checkpoint of another server, or forged)",
                )
            )
            read.append((number, None, ""))
            continue
        digest = line_digest(_json_part(text))
        read.append((number, replace(parsed, digest=digest), digest))
    # Newest first: a line is authentic when the authentic line after it names its digest, or
    # else by its own signature.
    authentic: set[int] = set()
    vouched: dict[str, str] = {}
    for number, checkpoint, digest in reversed(read):
        if checkpoint is None:
            continue
        replica = checkpoint.replica
        if vouched.get(replica) == digest:
            authentic.add(number)
            vouched[replica] = checkpoint.prev
            continue
        try:
            verifier.verify(
                base64.b64decode(checkpoint.sig, validate=True), CONTEXT + checkpoint.payload()
            )
        except (InvalidSignature, ValueError):
            problems.append(
                (
                    number,
                    f"{checkpoint.where}: the signature does not match (seq {checkpoint.seq}): "
                    "the line was edited or forged; the server's own lines are never changed "
                    "once written",
                )
            )
            vouched.pop(replica, None)
            continue
        authentic.add(number)
        vouched[replica] = checkpoint.prev
    # Oldest first: each authentic line must follow the one before it of its replica.
    last_digest: dict[str, str] = {}
    for number, checkpoint, digest in read:
        if checkpoint is None:
            last_digest.clear()  # its successor's link to it is not a second problem
            continue
        replica = checkpoint.replica
        if number not in authentic:
            last_digest.pop(replica, None)
            continue
        previous = last_digest.get(replica)
        if previous is not None and checkpoint.prev != previous:
            problems.append(
                (
                    number,
                    f"{checkpoint.where}: checkpoint seq {checkpoint.seq} does not follow the "
                    f"line before it of replica {replica!r}: lines between them were removed or "
                    "reordered, or the file was replaced by an older copy of itself before the "
                    "server wrote this line",
                )
            )
        last_digest[replica] = digest
        into.checkpoints.append(checkpoint)
    into.problems.extend(text for _, text in sorted(problems))


def read_files(paths: Sequence[Path], public_key: bytes, into: CheckpointSet) -> None:
    """Check and collect the checkpoints in files; an unreadable file is a problem."""
    for path in paths:
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                read_lines(handle, str(path), public_key, into)
        except OSError as exc:
            into.problems.append(f"cannot read the checkpoint file {path}: {exc}")


def read_directory(
    directory: Path,
    public_key: bytes,
    own: Path | None = None,
    extra: Sequence[tuple[str, Sequence[str]]] = (),
) -> CheckpointSet:
    """Check and collect every checkpoint file in `directory` (`own` first: other replicas'
    files are there too when they share a volume) and any (source, lines) given."""
    others = sorted(p for p in directory.glob(CHECKPOINT_GLOB) if p != own)
    files = ([own] if own is not None and own.exists() else []) + others
    found = CheckpointSet()
    read_files(files, public_key, found)
    for source, lines in extra:
        read_lines(lines, source, public_key, found)
    return found


def checkpoint_file_name(replica: str | None) -> str:
    """Return this server's checkpoint file name: one per replica, as replicas may share a
    data directory (one volume) and each file is one writer's chain of lines."""
    if not replica:
        return CHECKPOINT_FILE
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in replica)
    return f"audit-checkpoints.{safe}.log"


def load_public_key(data_dir: Path) -> bytes:
    """Return the raw public half of the command-signing key in `data_dir` (never creating
    one: a verify that made a new key would check against the wrong one)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    from rmm_common.errors import ConfigError  # noqa: PLC0415
    from rmm_server.signing import KEY_FILE  # noqa: PLC0415

    path = data_dir / KEY_FILE
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the command-signing key {path} ({exc}): is --data-dir the server's?"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def file_rollback(
    recorded: WrittenCheckpoint | None, found: CheckpointSet, own_replica: str | None = None
) -> str | None:
    """Return the problem when the checkpoint files lack the newest line the database records
    as written to them (a file replaced by an older copy, or lines cut from its end), or None.

    A line written after the files were read is not looked for; nor one of a replica whose
    file is not among those read (replicas with data directories of their own), unless it is
    `own_replica`, whose file must be there.
    """
    if recorded is None or recorded.at > found.read_at:
        return None
    if any(checkpoint.digest == recorded.digest for checkpoint in found.checkpoints):
        return None
    theirs = [c for c in found.checkpoints if c.replica == recorded.replica]
    if not theirs and recorded.replica != own_replica:
        return None
    newest = max(theirs, key=lambda c: (c.at, c.seq), default=None)
    holds = (
        f"its newest line is seq {newest.seq} of {newest.when()} ({newest.where})"
        if newest is not None
        else "no line of it was found"
    )
    return (
        f"rolled back: the database's anchor records that checkpoint seq {recorded.seq} of "
        f"{_when(recorded.at)} (line digest {recorded.digest[:16]}...) was written to the "
        f"checkpoint file of replica {recorded.replica!r}, but the files lack it and {holds}: the "
        "checkpoint file was replaced by an older copy of itself (or lines were cut from its "
        "end), which hides any rollback or rewrite of the chain since; put the newer file back, "
        "or verify against the server log's 'audit checkpoint' lines (--checkpoints FILE)"
    )


class CheckpointLog:
    """Sign the chain's head and append it to this server's checkpoint file and log.

    A checkpoint is written after every `every` appended entries (`appended`), and by
    `checkpoint` with the head read from the database: at start, on the server's timer (at
    least every minute) when the head moved, after an archive and at stop. Each is one
    signature, one write and one fsync; appends themselves pay nothing but a counter.
    """

    def __init__(
        self,
        directory: Path,
        signer: PayloadSigner,
        replica: str = "",
        file_name: str = CHECKPOINT_FILE,
        every: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.path = directory / file_name
        self.signer = signer
        self.replica = replica or "local"
        self.key = key_fingerprint(signer.public_key)
        self.every = max(1, every)
        self.clock = clock
        self._lock = threading.Lock()
        self._pending = 0
        self._last: Checkpoint | None = None
        self._last_digest: str | None = None  # None: not read from the file yet
        self._archived = (0, "0" * 64)

    def read(self, extra: Sequence[tuple[str, Sequence[str]]] = ()) -> CheckpointSet:
        """Read and check this directory's checkpoint files and any (source, lines) given, and
        the checkpoint this process wrote last, which its file must still hold."""
        read_at = self.clock()
        found = read_directory(self.directory, self.signer.public_key, self.path, extra)
        found.read_at = read_at
        with self._lock:
            last = self._last
        if last is None or last.where:
            return found  # none written by this process yet (`where`: read back at start)
        own = str(self.path)
        if not any(
            (c.seq, c.hash, c.at) == (last.seq, last.hash, last.at)
            and c.where.rsplit(":", 1)[0] == own
            for c in found.checkpoints
        ):
            found.problems.append(
                f"{self.path} lacks the checkpoint this server wrote last (seq {last.seq}, hash "
                f"{last.hash[:16]}..., at {last.when()}): lines were removed from it, or the "
                "file was replaced"
            )
            # What this process signed is known without reading it back: it pins the chain
            # even though the file has lost it.
            found.checkpoints.append(replace(last, where="this server's last checkpoint"))
        return found

    def appended(self, seq: int, digest: str, count: int = 1) -> Checkpoint | None:
        """Count `count` entries just committed (the newest is `seq` with `digest`); checkpoint
        when `every` have gone by, or at once when the head went back (a rollback under us)."""
        with self._lock:
            self._pending += count
            if self._last is None:  # nothing signed by this process yet: continue the file's
                self._last = self._read_last()
                if self._last is not None:
                    self._archived = (self._last.archived_through, self._last.anchor_hash)
            last = self._last
            behind = last is not None and seq <= last.seq
            if self._pending < self.every and not behind:
                return None
            return self._write_locked(seq, digest, *self._archived)

    def continue_after(self, recorded: WrittenCheckpoint | None) -> str | None:
        """Check the file against the newest line the database records as written to it; when
        the file lacks it and ends earlier (an older copy put in its place), say so loudly and
        continue the chain of lines from the recorded line, so the next line's `prev` names a
        line the file lacks and every later verify of the file shows the gap. Return the
        problem, or None."""
        with self._lock:
            if self._last is None and self._last_digest is None:
                self._last = self._read_last()
                if self._last is not None:
                    self._archived = (self._last.archived_through, self._last.anchor_hash)
            last = self._last
            if (
                recorded is None
                or recorded.replica != self.replica
                or recorded.digest == self._last_digest
                or (last is not None and last.at >= recorded.at)
            ):
                return None
            file_has = (
                f"its last line is seq {last.seq} of {last.when()}"
                if last is not None
                else "it holds no checkpoint"
            )
            problem = (
                f"AUDIT CHECKPOINT FILE ROLLED BACK: the database records checkpoint seq "
                f"{recorded.seq} of {_when(recorded.at)} as written to {self.path}, but "
                f"{file_has}: the file was replaced by an older copy of itself (or cut short); "
                "new checkpoints continue from the recorded one so the gap stays visible; run "
                "`rmm audit verify`"
            )
            log.error("%s", problem)
            self._last_digest = recorded.digest
            return problem

    def checkpoint(
        self, head_seq: int, head_hash: str, archived_through: int, anchor_hash: str
    ) -> Checkpoint | None:
        """Write a checkpoint of this head unless the last one written says the same."""
        with self._lock:
            return self._write_locked(head_seq, head_hash, archived_through, anchor_hash)

    def _write_locked(
        self, head_seq: int, head_hash: str, archived_through: int, anchor_hash: str
    ) -> Checkpoint | None:
        self._archived = (archived_through, anchor_hash)
        last = self._last
        if last is None:
            last = self._last = self._read_last()
        if last is not None and (last.seq, last.hash, last.archived_through, last.anchor_hash) == (
            head_seq,
            head_hash,
            archived_through,
            anchor_hash,
        ):
            self._pending = 0
            return None
        if last is not None and (
            head_seq < last.seq or (head_seq == last.seq and head_hash != last.hash)
        ):
            # Said loudly here, as it happens; `rmm audit verify` says it again, with detail.
            log.error(
                "AUDIT CHAIN ROLLED BACK OR REWRITTEN: the head is now seq %d (%s...), but "
                "checkpoint %s of %s said seq %d (%s...): the audit tables were changed outside "
                "the server; run `rmm audit verify`",
                head_seq,
                head_hash[:16],
                last.where or self.path,
                last.when(),
                last.seq,
                last.hash[:16],
            )
        unsigned = Checkpoint(
            seq=head_seq,
            hash=head_hash,
            at=round(self.clock(), 6),
            archived_through=archived_through,
            anchor_hash=anchor_hash,
            replica=self.replica,
            key=self.key,
            prev=self._last_digest or "",
        )
        signature = self.signer.sign_payload(CONTEXT + unsigned.payload())
        signed = replace(unsigned, sig=base64.b64encode(signature).decode())
        line = signed.line()
        signed = replace(signed, digest=line_digest(line))
        self._append(line)
        # One log line per checkpoint, the whole signed line: journald or syslog keeps a copy
        # that `rmm audit verify --checkpoints` reads as it reads the file.
        log.info("audit checkpoint %s", line)
        self._last = signed
        self._last_digest = line_digest(line)
        self._pending = 0
        return signed

    def _append(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read_last(self) -> Checkpoint | None:
        """Read the file's last line to continue its chain of lines after a restart."""
        self._last_digest = ""
        try:
            with self.path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 8192))
                tail = handle.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        lines = tail.splitlines()
        if tail and not tail.endswith("\n"):
            # A line cut short by a crash: end it, so the next line starts clean, and continue
            # from the last whole line (verify reports the cut one).
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, b"\n")
            finally:
                os.close(fd)
            lines = lines[:-1]
        if size > len(tail.encode()) and lines:
            lines = lines[1:]  # the first may be the end of a line the 8 KiB cut into
        lines = [text for text in lines if text.strip()]
        if not lines:
            return None
        try:
            last = parse_line(lines[-1], f"{self.path}:last")
        except ValueError as exc:
            log.error("%s; new checkpoints continue after it", exc)
            return None
        self._last_digest = line_digest(lines[-1])
        return replace(last, digest=self._last_digest)


class PinCheck:
    """Check the chain's entries, as a verify walks them, against signed checkpoints.

    Every checkpoint pins the hash at its seq: an entry that has another hash now was rewritten
    (with every later hash recomputed, or the link check would have caught it); a checkpoint
    beyond the database's head shows entries deleted and the head moved back.
    """

    def __init__(self, found: CheckpointSet, archived_through: int, anchor_hash: str) -> None:
        self.found = found
        self.problems: list[str] = list(found.problems)
        self.archived_through = archived_through
        self.pins: dict[int, list[Checkpoint]] = {}
        self.archived: list[Checkpoint] = []  # pins inside the archived range
        self.checked = 0
        self._archives: set[int] = set()  # through_seq of each ArchiveAudit recorded as ok
        self._last_match = 0
        self._mismatched = False
        for checkpoint in found.checkpoints:
            if checkpoint.seq < archived_through:
                self.archived.append(checkpoint)
            elif checkpoint.seq == archived_through:
                self._compare(checkpoint, archived_through, anchor_hash, "the archive anchor")
            else:
                self.pins.setdefault(checkpoint.seq, []).append(checkpoint)
            if checkpoint.archived_through > archived_through:
                self._problem(
                    f"{checkpoint.where}: checkpoint of {checkpoint.when()} says entries through "
                    f"seq {checkpoint.archived_through} had been archived, but the database's "
                    f"archive anchor is seq {archived_through}: the anchor was moved back (an "
                    "old backup restored, or archived entries put back)"
                )
            elif (
                checkpoint.archived_through == archived_through
                and checkpoint.anchor_hash != anchor_hash
            ):
                self._problem(
                    f"{checkpoint.where}: checkpoint of {checkpoint.when()} has archive anchor "
                    f"seq {archived_through} with hash {checkpoint.anchor_hash[:16]}..., the "
                    f"database {anchor_hash[:16]}...: the anchor was rewritten"
                )

    def _problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def _compare(self, checkpoint: Checkpoint, seq: int, digest: str, what: str) -> None:
        self.checked += 1
        if checkpoint.hash == digest:
            if not self._mismatched:
                self._last_match = max(self._last_match, seq)
            return
        since = (
            f"; the newest checkpoint that still matches is at seq {self._last_match}, so the "
            "rewrite starts after it"
            if self._last_match
            else ""
        )
        self._mismatched = True
        self._problem(
            f"{checkpoint.where}: rewritten: {what} seq {seq} has hash {digest[:16]}... but the "
            f"checkpoint of {checkpoint.when()} signed {checkpoint.hash[:16]}... for it: the "
            f"chain was rewritten at or before seq {seq} after that checkpoint was written{since}"
        )

    def entry(self, seq: int, digest: str) -> None:
        """Check one entry of the walk (in seq order) against the checkpoints at its seq."""
        for checkpoint in self.pins.get(seq, ()):
            self._compare(checkpoint, seq, digest, "entry")

    def archive_recorded(self, details_json: str) -> None:
        """Note an `ArchiveAudit` call the log records as done (its entry's details)."""
        try:
            through = int(json.loads(details_json).get("through_seq", 0))
        except (ValueError, TypeError, AttributeError):
            return
        self._archives.add(through)

    def finish(self, walked_to: int, head_seq: int, chain_ok: bool) -> None:
        """Check what the walk did not reach: checkpoints beyond the database's head; and that
        the archive anchor was set by an archive the log records."""
        if not chain_ok:
            return  # with a broken chain, the chain's problem is the one to read first
        if self.archived_through and self.archived_through not in self._archives:
            # The timer signs whatever anchor it finds, so a checkpoint alone cannot tell an
            # archive from old entries deleted and the anchor moved on; the log can: every
            # archive's own entry comes after the entries it removed, so it is always kept.
            self._problem(
                f"the database is archived through seq {self.archived_through}, but no "
                f"ArchiveAudit call through seq {self.archived_through} is recorded in the log: "
                "the oldest entries were deleted and the anchor moved outside the server (or "
                "that call's audit entry could not be written: look for AUDIT ENTRY NOT WRITTEN "
                "in the server's log)"
            )
        beyond = [c for seq, pins in self.pins.items() if seq > walked_to for c in pins]
        if not beyond:
            return
        newest = max(beyond, key=lambda c: (c.seq, c.at))
        self.checked += len(beyond)
        self._problem(
            f"{newest.where}: rolled back: the checkpoint of {newest.when()} says the log reached "
            f"seq {newest.seq} (hash {newest.hash[:16]}...), but the database's head is seq "
            f"{head_seq}: seqs {head_seq + 1}..{newest.seq} were deleted and the head moved back "
            "(or an old backup was restored)"
        )
