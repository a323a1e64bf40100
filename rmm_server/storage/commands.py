"""Remote commands in the database: queued until delivered, kept with their results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, case, null, select, update

from rmm_proto import commands_pb2
from rmm_server.storage import schema
from rmm_server.storage.store import Store, record_values

Status = commands_pb2.CommandStatus
# Statuses after which nothing changes any more.
FINAL_STATUSES = frozenset(
    {
        Status.COMMAND_SUCCEEDED,
        Status.COMMAND_FAILED,
        Status.COMMAND_TIMED_OUT,
        Status.COMMAND_REFUSED,
        Status.COMMAND_DECLINED,
        Status.COMMAND_EXPIRED,
        Status.COMMAND_CANCELLED,
    }
)
# Statuses of a command the agent should (still) receive when it connects.
UNDELIVERED_STATUSES = (Status.COMMAND_QUEUED, Status.COMMAND_SENT)


@dataclass(slots=True)
class CommandRecord:
    """One command for one agent, as stored."""

    id: str
    run_id: str
    agent_id: str
    hostname: str
    operator: str
    action: str
    summary: str
    status: int
    issued_at: float
    expires_at: float
    signed: bytes
    sent_at: float | None = None
    finished_at: float | None = None
    result: bytes | None = None
    error: str = ""
    # What listings show instead of a result they leave out: a pulled file's path, size, sha256.
    result_note: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class CommandQuery:
    agent_id: str = ""
    run_id: str = ""
    statuses: tuple[int, ...] = ()
    action: str = ""  # only commands of this action (run_script, list_services, ...)
    limit: int = 100
    # Pages that list commands: a pulled file's result (its data, up to 8 MiB) is left out; its
    # result_note says what it was.
    without_file_data: bool = False


class CommandStore:
    """Read and write commands through the server's Store (same engine, same errors)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, records: Sequence[CommandRecord]) -> None:
        """Store new commands in one transaction."""
        if records:
            with self.store.transaction(f"queue {len(records)} commands") as conn:
                conn.execute(schema.commands.insert(), [record_values(r) for r in records])

    def get(self, command_id: str) -> CommandRecord | None:
        """Return one command, or None."""
        table = schema.commands
        with self.store.transaction("read a command") as conn:
            row = conn.execute(select(table).where(table.c.id == command_id)).mappings().first()
        return CommandRecord(**row) if row else None

    def get_many(self, command_ids: Sequence[str]) -> dict[str, CommandRecord]:
        """Return the commands with these ids (missing ones are left out)."""
        table = schema.commands
        found: dict[str, CommandRecord] = {}
        with self.store.transaction("read commands") as conn:
            for start in range(0, len(command_ids), 500):
                chunk = command_ids[start : start + 500]
                for row in conn.execute(select(table).where(table.c.id.in_(chunk))).mappings():
                    found[row["id"]] = CommandRecord(**row)
        return found

    def undelivered(self, agent_id: str, now: float) -> list[CommandRecord]:
        """Return the agent's commands still to deliver and not expired, oldest first."""
        table = schema.commands
        statement = (
            select(table)
            .where(
                and_(
                    table.c.agent_id == agent_id,
                    table.c.status.in_(UNDELIVERED_STATUSES),
                    table.c.expires_at > now,
                )
            )
            .order_by(table.c.issued_at)
        )
        with self.store.transaction("read queued commands") as conn:
            return [CommandRecord(**row) for row in conn.execute(statement).mappings()]

    def mark_sent(self, command_ids: Sequence[str], now: float) -> None:
        """Record that commands went out on an agent's stream (they may go again on reconnect)."""
        if not command_ids:
            return
        table = schema.commands
        statement = (
            update(table)
            .where(and_(table.c.id.in_(command_ids), table.c.status == Status.COMMAND_QUEUED))
            .values(status=Status.COMMAND_SENT, sent_at=now)
        )
        with self.store.transaction("mark commands sent") as conn:
            conn.execute(statement)

    def record_results(
        self,
        results: Sequence[tuple[str, int, bytes, str, float | None]],
        notes: Mapping[str, str] | None = None,
    ) -> None:
        """Store (id, status, result, error, finished_at) unless the command is final already,
        with each command's result note from `notes` (by id; none when absent)."""
        notes = notes or {}
        if not results:
            return
        table = schema.commands
        statement = (
            update(table)
            .where(
                # Spelled out: an expanding NOT IN cannot run under executemany.
                and_(
                    table.c.id == bindparam("b_id"),
                    *(table.c.status != status for status in sorted(FINAL_STATUSES)),
                )
            )
            .values(
                status=bindparam("b_status"),
                result=bindparam("b_result"),
                error=bindparam("b_error"),
                finished_at=bindparam("b_finished_at"),
                result_note=bindparam("b_note"),
            )
        )
        rows = [
            {
                "b_id": command_id,
                "b_status": status,
                "b_result": result,
                "b_error": error,
                "b_finished_at": finished_at,
                "b_note": notes.get(command_id, ""),
            }
            for command_id, status, result, error, finished_at in results
        ]
        with self.store.transaction(f"store {len(rows)} command results") as conn:
            conn.execute(statement, rows)

    def expire(self, now: float) -> list[CommandRecord]:
        """Mark undelivered commands past their expiry EXPIRED and return them."""
        table = schema.commands
        condition = and_(table.c.status.in_(UNDELIVERED_STATUSES), table.c.expires_at <= now)
        # One UPDATE ... RETURNING: a SELECT then an UPDATE by id would, on PostgreSQL, expire
        # a command whose result was stored between the two.
        with self.store.transaction("expire commands") as conn:
            found = conn.execute(
                update(table)
                .where(condition)
                .values(
                    status=Status.COMMAND_EXPIRED,
                    finished_at=now,
                    error="expired before the agent connected",
                )
                .returning(*table.c)
            ).mappings()
            return [CommandRecord(**row) for row in found]

    def query(self, query: CommandQuery) -> list[CommandRecord]:
        """Return matching commands, newest first."""
        table = schema.commands
        statement = select(table)
        if query.without_file_data:
            result = case((table.c.action == "pull_file", null()), else_=table.c.result)
            columns = [column for column in table.c if column.name != "result"]
            statement = select(*columns, result.label("result"))
        if query.agent_id:
            statement = statement.where(table.c.agent_id == query.agent_id)
        if query.run_id:
            statement = statement.where(table.c.run_id == query.run_id)
        if query.statuses:
            statement = statement.where(table.c.status.in_(query.statuses))
        if query.action:
            statement = statement.where(table.c.action == query.action)
        statement = statement.order_by(table.c.issued_at.desc()).limit(query.limit)
        with self.store.transaction("list commands") as conn:
            return [CommandRecord(**row) for row in conn.execute(statement).mappings()]
