"""The agent's own record of every command it was sent: who, what, when and the outcome.

It is the host administrator's view (`rmm-agent history`), the memory that makes a redelivered or
replayed command run at most once, and the durable outbox for results: a final result stays
"undelivered" until the server says it stored it, and is resent after every reconnect until then.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rmm_proto import commands_pb2

HISTORY_FILE = "history.sqlite3"
# Ids are remembered well past any command's expiry, so a replay meets "already ran" or "expired".
RETENTION_SECONDS = 90 * 24 * 3600.0
Status = commands_pb2.CommandStatus
FINAL = frozenset(
    {
        Status.COMMAND_SUCCEEDED,
        Status.COMMAND_FAILED,
        Status.COMMAND_TIMED_OUT,
        Status.COMMAND_REFUSED,
        Status.COMMAND_DECLINED,
    }
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    operator TEXT NOT NULL,
    action TEXT NOT NULL,
    summary TEXT NOT NULL,
    run_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    finished_at REAL,
    result BLOB,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ix_commands_received ON commands (received_at);
CREATE TABLE IF NOT EXISTS refusals (
    at REAL NOT NULL,
    command_id TEXT NOT NULL,
    operator TEXT NOT NULL,
    summary TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


@dataclass(slots=True)
class HistoryEntry:
    """One line of `rmm-agent history`."""

    at: float
    command_id: str
    operator: str
    action: str
    summary: str
    status: str
    error: str
    finished_at: float | None
    exit_code: int | None

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def status_word(status: int) -> str:
    """succeeded, failed, running..."""
    return Status.Name(status).removeprefix("COMMAND_").lower()


class CommandHistory:
    """The agent's command log in its state directory (SQLite, private to the agent's user)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        new = not path.exists()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if new:
            path.chmod(0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, state_dir: Path, clock: Callable[[], float] = time.time) -> CommandHistory:
        """Open (or create) the history in an agent's state directory."""
        return cls(state_dir / HISTORY_FILE, clock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def begin(self, command: commands_pb2.Command, summary: str) -> bool:
        """Record that `command` starts now; False when its id was seen before (do not run it)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO commands"
                " (id, received_at, operator, action, summary, run_id, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    command.id,
                    self.clock(),
                    command.operator,
                    command.WhichOneof("action") or "",
                    summary,
                    command.run_id,
                    Status.COMMAND_RUNNING,
                ),
            )
            return cursor.rowcount == 1

    def finish(self, result: commands_pb2.CommandResult) -> None:
        """Keep a command's (interim or final) result; a final one waits to be delivered."""
        final = result.status in FINAL
        with self._lock:
            self._db.execute(
                "UPDATE commands SET status = ?, error = ?, finished_at = ?, result = ?,"
                " delivered = 0 WHERE id = ?",
                (
                    result.status,
                    result.error,
                    result.finished_at if final else None,
                    result.SerializeToString(),
                    result.command_id,
                ),
            )

    def result(self, command_id: str) -> commands_pb2.CommandResult | None:
        """Return the result kept for a command, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT result FROM commands WHERE id = ?", (command_id,)
            ).fetchone()
        if row is None or row[0] is None:
            return None
        return commands_pb2.CommandResult.FromString(row[0])

    def mark_delivered(self, command_id: str) -> None:
        """The server stored this command's final result: stop resending it."""
        with self._lock:
            self._db.execute("UPDATE commands SET delivered = 1 WHERE id = ?", (command_id,))

    def undelivered(self) -> list[commands_pb2.CommandResult]:
        """Final results the server has not acknowledged, oldest first."""
        finals = ",".join(str(int(status)) for status in FINAL)
        with self._lock:
            rows = self._db.execute(
                f"SELECT result FROM commands WHERE delivered = 0 AND result IS NOT NULL"
                f" AND status IN ({finals}) ORDER BY received_at"
            ).fetchall()
        return [commands_pb2.CommandResult.FromString(row[0]) for row in rows]

    def interrupted(self, keep: set[str]) -> list[str]:
        """Ids of commands that were running when the agent stopped (other than `keep`)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM commands WHERE status = ?", (Status.COMMAND_RUNNING,)
            ).fetchall()
        return [row[0] for row in rows if row[0] not in keep]

    def refused(self, command_id: str, operator: str, summary: str, reason: str) -> None:
        """Log a command that was refused before it could be trusted (bad signature, expired...)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO refusals (at, command_id, operator, summary, reason)"
                " VALUES (?, ?, ?, ?, ?)",
                (self.clock(), command_id, operator, summary, reason),
            )

    def prune(self) -> int:
        """Forget delivered commands and refusals older than the retention."""
        cutoff = self.clock() - RETENTION_SECONDS
        with self._lock:
            removed = self._db.execute(
                "DELETE FROM commands WHERE received_at < ? AND delivered = 1", (cutoff,)
            ).rowcount
            removed += self._db.execute("DELETE FROM refusals WHERE at < ?", (cutoff,)).rowcount
        return int(removed)

    def entries(self, limit: int = 50) -> list[HistoryEntry]:
        """The newest `limit` commands and refusals, oldest first."""
        with self._lock:
            commands = self._db.execute(
                "SELECT received_at, id, operator, action, summary, status, error, finished_at,"
                " result FROM commands ORDER BY received_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            refusals = self._db.execute(
                "SELECT at, command_id, operator, summary, reason FROM refusals"
                " ORDER BY at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        entries: list[HistoryEntry] = []
        for at, cid, operator, action, summary, status, error, finished_at, blob in commands:
            exit_code = None
            if blob is not None:
                result = commands_pb2.CommandResult.FromString(blob)
                if result.HasField("script"):
                    exit_code = result.script.exit_code
            entries.append(
                HistoryEntry(
                    at, cid, operator, action, summary, status_word(status), error, finished_at,
                    exit_code,
                )
            )
        for at, cid, operator, summary, reason in refusals:
            entries.append(
                HistoryEntry(at, cid, operator, "", summary, "refused", reason, at, None)
            )
        entries.sort(key=lambda entry: entry.at)
        return entries[-limit:]
