"""The CommandService driven directly on a real Store, with an injected clock and no network:
issuing (signed, audited first, sent to a connected agent or queued), delivery when the agent
connects, results stored then acknowledged, the first final outcome kept, expiry, watchers.

An agent's stream end is the service's own AgentLink: what the servicer would send the agent is
what the test reads from its outbox."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rmm_common.errors import StorageError
from rmm_proto import commands_pb2
from rmm_server.budgets import AgentByteBudget, FreeSpaceReserve
from rmm_server.commands import AgentLink, AuditEntry, CommandService
from rmm_server.server_metrics import ServerMetrics
from rmm_server.signing import CommandSigner
from rmm_server.storage import AgentRecord, Store, open_store
from rmm_server.storage.commands import CommandRecord, CommandStore
from rmm_server.storage.store import sqlite_url

Status = commands_pb2.CommandStatus
WAIT = 30.0
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(sqlite_url(tmp_path))
    yield store
    store.close()


def agent(name: str) -> AgentRecord:
    return AgentRecord(
        id=f"agent-{name}",
        credential_hash="h",
        client="acme",
        site="hq",
        enrolled_at=T0 - 100,
        hostname=f"host-{name}",
    )


class Harness:
    """A CommandService with its clock, audit trail and metrics in reach."""

    def __init__(
        self,
        store: Store,
        byte_budget: AgentByteBudget | None = None,
        free_space: FreeSpaceReserve | None = None,
    ) -> None:
        self.clock = Clock(T0)
        self.audited: list[AuditEntry] = []
        self.metrics = ServerMetrics()
        self.key = Ed25519PrivateKey.generate()
        self.service = CommandService(
            store,
            CommandSigner(self.key),
            audit=self.audit,
            metrics=self.metrics,
            clock=self.clock,
            byte_budget=byte_budget,
            free_space=free_space,
        )
        if byte_budget is not None:
            byte_budget.clock = self.clock
        self.store = CommandStore(store)

    def audit(self, entries: Sequence[AuditEntry]) -> None:
        self.audited.extend(entries)

    async def issue(
        self,
        targets: Sequence[AgentRecord],
        body: str = "echo hi",
        expires_in: float = 600.0,
        watch: Callable[[CommandRecord], None] | None = None,
    ) -> list[CommandRecord]:
        return await self.service.issue(
            "alice",
            targets,
            "run_script",
            commands_pb2.RunScript(shell="sh", body=body),
            timeout_seconds=60.0,
            expires_in_seconds=expires_in,
            consent=lambda _agent: 0,
            summary=lambda command: command.run_script.body,
            run_id="run-1",
            watch=watch,
        )

    def verified(self, message: commands_pb2.ServerCommandMessage) -> commands_pb2.Command:
        """Return the command in `message` after checking its signature as the agent does."""
        assert message.HasField("command"), message
        public: Ed25519PublicKey = self.key.public_key()
        public.verify(message.command.signature, message.command.command)  # raises if forged
        return commands_pb2.Command.FromString(message.command.command)


async def next_message(link: AgentLink) -> commands_pb2.ServerCommandMessage | None:
    return await asyncio.wait_for(link.outbox.get(), WAIT)


def result(
    command_id: str, status: int, exit_code: int = 0, error: str = ""
) -> commands_pb2.CommandResult:
    made = commands_pb2.CommandResult(
        command_id=command_id,
        status=status,  # type: ignore[arg-type]
        error=error,
        started_at=T0,
        finished_at=T0 + 1,
    )
    made.script.exit_code = exit_code
    return made


def test_a_command_for_a_connected_agent_is_audited_stored_signed_and_sent(
    sqlite_store: Store,
) -> None:
    h = Harness(sqlite_store)
    target = agent("a")

    async def run() -> tuple[commands_pb2.ServerCommandMessage | None, list[CommandRecord]]:
        link = await h.service.connect(target, commands_pb2.CommandHello(agent_started_at=T0))
        records = await h.issue([target])
        return await next_message(link), records

    message, (record,) = asyncio.run(run())
    assert message is not None
    command = h.verified(message)
    assert (command.id, command.agent_id, command.operator) == (record.id, target.id, "alice")
    assert command.run_script.body == "echo hi" and command.run_id == "run-1"
    assert (command.issued_at, command.expires_at) == (T0, T0 + 600.0)
    stored = h.store.get(record.id)
    assert stored is not None
    assert (stored.status, stored.sent_at, stored.summary) == (Status.COMMAND_SENT, T0, "echo hi")
    assert stored.signed == message.command.SerializeToString()
    ((operator, action, target_id, details, outcome),) = h.audited
    assert (operator, action, target_id, outcome) == ("alice", "command.sent", target.id, "queued")
    assert details["command_id"] == record.id and details["hostname"] == "host-a"
    value = h.metrics.registry.get_sample_value(
        "rmm_server_commands_issued_total", {"action": "run_script"}
    )
    assert value == 1.0


def test_a_command_for_an_offline_agent_waits_and_goes_out_when_it_connects_unless_expired(
    store: Store,
) -> None:
    h = Harness(store)
    target = agent("b")

    async def run() -> tuple[list[Any], list[CommandRecord], list[CommandRecord]]:
        first = await h.issue([target], body="first", expires_in=100.0)
        second = await h.issue([target], body="second", expires_in=1000.0)
        assert h.store.get(first[0].id).status == Status.COMMAND_QUEUED  # type: ignore[union-attr]
        h.clock.now += 500.0  # the first expired meanwhile, unsettled yet
        link = await h.service.connect(target, commands_pb2.CommandHello())
        got = []
        while not link.outbox.empty():
            got.append(link.outbox.get_nowait())
        return got, first, second

    got, (first,), (second,) = asyncio.run(run())
    assert [h.verified(m).run_script.body for m in got] == ["second"]
    sent = h.store.get(second.id)
    assert sent is not None and (sent.status, sent.sent_at) == (Status.COMMAND_SENT, T0 + 500.0)
    waiting = h.store.get(first.id)
    assert waiting is not None and waiting.status == Status.COMMAND_QUEUED


def test_a_final_result_is_stored_then_acknowledged_and_its_watcher_told(
    sqlite_store: Store,
) -> None:
    h = Harness(sqlite_store)
    target = agent("c")
    finished: list[CommandRecord] = []

    async def run() -> list[commands_pb2.ServerCommandMessage | None]:
        h.service.start()
        try:
            link = await h.service.connect(target, commands_pb2.CommandHello())
            (record,) = await h.issue([target], watch=finished.append)
            await next_message(link)  # the command itself
            h.clock.now += 5.0
            # Running: stored, neither acknowledged nor final.
            h.service.submit_result(target.id, result(record.id, Status.COMMAND_RUNNING), link)
            await asyncio.wait_for(h.service._results.join(), WAIT)  # type: ignore[union-attr]
            running = h.store.get(record.id)
            assert running is not None and running.status == Status.COMMAND_RUNNING
            assert link.outbox.empty() and not finished
            h.service.submit_result(
                target.id, result(record.id, Status.COMMAND_FAILED, 3, "exit status 3"), link
            )
            ack = await next_message(link)
            # A resend (the ack was lost): acknowledged again, the outcome unchanged.
            h.clock.now += 5.0
            h.service.submit_result(target.id, result(record.id, Status.COMMAND_SUCCEEDED), link)
            again = await next_message(link)
            return [ack, again]
        finally:
            await h.service.stop()

    acks = asyncio.run(run())
    (record,) = finished
    assert [ack.result_stored if ack else None for ack in acks] == [record.id, record.id]
    stored = h.store.get(record.id)
    assert stored is not None
    assert (stored.status, stored.error, stored.finished_at) == (
        Status.COMMAND_FAILED,
        "exit status 3",
        T0 + 5.0,
    )
    assert commands_pb2.CommandResult.FromString(stored.result or b"").script.exit_code == 3
    assert record.status == Status.COMMAND_FAILED  # the watcher had the final record
    outcomes = [entry for entry in h.audited if entry[1] == "command.result"]
    assert len(outcomes) == 1
    operator, _, target_id, details, outcome = outcomes[0]
    assert (operator, target_id, outcome) == ("alice", target.id, "failed: exit status 3")
    assert details["exit_code"] == 3 and details["command_id"] == record.id


def test_a_result_for_another_agents_command_is_ignored_but_acknowledged(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(sqlite_store)
    owner, intruder = agent("d"), agent("e")

    async def run() -> commands_pb2.ServerCommandMessage | None:
        h.service.start()
        try:
            (record,) = await h.issue([owner])
            link = await h.service.connect(intruder, commands_pb2.CommandHello())
            h.service.submit_result(intruder.id, result(record.id, Status.COMMAND_SUCCEEDED), link)
            return await next_message(link)
        finally:
            await h.service.stop()

    ack = asyncio.run(run())
    assert ack is not None and ack.result_stored  # so the agent stops resending it
    (record,) = h.store.get_many([ack.result_stored]).values()
    assert record.status == Status.COMMAND_QUEUED and record.result is None
    assert f"agent {intruder.id} sent a result for command {record.id!r} that is not its own" in (
        caplog.text
    )


def test_expiry_settles_unanswered_commands_and_tells_their_watchers(store: Store) -> None:
    h = Harness(store)
    online, offline, done = agent("f"), agent("g"), agent("k")
    finished: list[CommandRecord] = []

    async def run() -> None:
        await h.service.connect(online, commands_pb2.CommandHello())
        records = await h.issue([online, offline, done], expires_in=60.0, watch=finished.append)
        answered = result(records[2].id, Status.COMMAND_SUCCEEDED).SerializeToString()
        h.store.record_results([(records[2].id, Status.COMMAND_SUCCEEDED, answered, "", T0 + 1)])
        await h.service.expire_overdue()  # not yet
        assert not finished
        h.clock.now += 61.0
        await h.service.expire_overdue()

    asyncio.run(run())
    # Queued or sent but never answered: expired; a command with a final result keeps it.
    assert sorted((r.agent_id, r.status) for r in finished) == [
        (online.id, Status.COMMAND_EXPIRED),
        (offline.id, Status.COMMAND_EXPIRED),
    ]
    assert {r.error for r in finished} == {"expired before the agent connected"}
    assert sorted(e[2] for e in h.audited if e[1] == "command.result") == [online.id, offline.id]
    kept = [r for r in h.store.get_many([c for c in h.service._watchers]).values()]
    assert [(r.agent_id, r.status) for r in kept] == [(done.id, Status.COMMAND_SUCCEEDED)]


def test_unwatch_stops_the_watcher(sqlite_store: Store) -> None:
    h = Harness(sqlite_store)
    target = agent("h")
    finished: list[CommandRecord] = []

    async def run() -> None:
        (record,) = await h.issue([target], expires_in=10.0, watch=finished.append)
        h.service.unwatch([record.id])
        h.clock.now += 11.0
        await h.service.expire_overdue()

    asyncio.run(run())
    assert finished == []
    assert [e[4] for e in h.audited if e[1] == "command.result"] == [
        "expired: expired before the agent connected"
    ]


def test_a_new_stream_replaces_the_old_one_and_the_old_ones_end_keeps_it(
    sqlite_store: Store,
) -> None:
    h = Harness(sqlite_store)
    target = agent("i")

    async def run() -> tuple[AgentLink, AgentLink, commands_pb2.ServerCommandMessage | None]:
        old = await h.service.connect(target, commands_pb2.CommandHello())
        new = await h.service.connect(
            target, commands_pb2.CommandHello(disconnected_at=T0 - 30, disconnect_reason="reset")
        )
        ended = await next_message(old)  # None: the old stream is told to end
        h.service.disconnect(old)  # its servicer cleans up late
        assert h.service.is_connected(target.id)
        await h.issue([target])
        return old, new, ended

    old, new, ended = asyncio.run(run())
    assert ended is None
    assert h.service.links[target.id] is new
    message = new.outbox.get_nowait()
    assert message is not None and h.verified(message).agent_id == target.id
    assert old.outbox.empty()
    h.service.disconnect(new)
    assert not h.service.is_connected(target.id)


def test_results_need_a_started_writer(sqlite_store: Store) -> None:
    h = Harness(sqlite_store)
    with pytest.raises(RuntimeError, match="start"):
        h.service.submit_result("agent-x", result("c", Status.COMMAND_SUCCEEDED), None)


class FlakyStore(Store):
    """A real Store whose next `failures` transactions that store results fail."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.failures = 0

    def transaction(self, what: str) -> Any:
        if self.failures and "command results" in what:
            self.failures -= 1
            raise StorageError(f"database unavailable while trying to {what}: gone")
        return super().transaction(what)


def test_a_storage_outage_leaves_the_result_unacknowledged_and_the_writer_running(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(sqlite_store)
    h = Harness(flaky)
    target = agent("j")
    caplog.set_level(logging.ERROR, logger="rmm_server.commands")

    async def run() -> commands_pb2.ServerCommandMessage | None:
        h.service.start()
        try:
            link = await h.service.connect(target, commands_pb2.CommandHello())
            (record,) = await h.issue([target])
            await next_message(link)
            flaky.failures = 1
            h.service.submit_result(target.id, result(record.id, Status.COMMAND_SUCCEEDED), link)
            await asyncio.wait_for(h.service._results.join(), WAIT)  # type: ignore[union-attr]
            assert link.outbox.empty()  # not stored, so not acknowledged: the agent resends
            h.service.submit_result(target.id, result(record.id, Status.COMMAND_SUCCEEDED), link)
            return await next_message(link)
        finally:
            await h.service.stop()

    ack = asyncio.run(run())
    assert ack is not None and ack.result_stored
    stored = h.store.get(ack.result_stored)
    assert stored is not None and stored.status == Status.COMMAND_SUCCEEDED
    assert "could not store 1 command results; agents will resend" in caplog.text


def test_replicas_deliver_each_others_commands_and_tell_each_others_watchers(
    store: Store,
) -> None:
    """Two services on one database, as two replicas: one issues for an agent whose stream is
    on the other; the other's result settles the first one's watcher."""
    issuing, holding = Harness(store), Harness(store)
    target = agent("r")
    finished: list[CommandRecord] = []

    async def run() -> tuple[commands_pb2.ServerCommandMessage | None, str]:
        holding.service.start()
        try:
            link = await holding.service.connect(target, commands_pb2.CommandHello())
            (record,) = await issuing.issue([target], watch=finished.append)
            assert record.status == Status.COMMAND_QUEUED  # not on the issuing replica
            # What the issuing replica publishes ("cmd", "m": [[agent, command]]).
            holding.service.deliver_forwarded({"m": [[target.id, record.id], ["elsewhere", "x"]]})
            message = await next_message(link)
            # Marked sent once handed to the stream (the mark follows the send).
            await until_true(lambda: h_get(holding, record.id).status == Status.COMMAND_SENT)
            holding.service.submit_result(
                target.id, result(record.id, Status.COMMAND_SUCCEEDED), link
            )
            stored = await next_message(link)
            assert stored is not None and stored.result_stored == record.id
            assert not finished  # the issuing replica hears of it by message only
            # What the holding replica publishes ("res", "c": [command ids]).
            issuing.service.settled_elsewhere({"c": [record.id, "not-watched"]})
            await until_true(lambda: bool(finished))
            return message, record.id
        finally:
            await holding.service.stop()

    message, command_id = asyncio.run(run())
    assert message is not None and issuing.verified(message).id == command_id
    assert [(r.id, r.status) for r in finished] == [(command_id, Status.COMMAND_SUCCEEDED)]


def h_get(h: Harness, command_id: str) -> CommandRecord:
    found = h.store.get(command_id)
    assert found is not None
    return found


async def until_true(condition: Callable[[], bool]) -> None:
    """Yield to the loop until `condition()` holds, within a generous deadline."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.001)


def printed(command_id: str, size: int) -> commands_pb2.CommandResult:
    """A script's successful result with `size` bytes of output."""
    made = result(command_id, Status.COMMAND_SUCCEEDED)
    made.script.stdout = "x" * size
    return made


def refusals(h: Harness, budget: str) -> float | None:
    return h.metrics.registry.get_sample_value(
        "rmm_server_command_results_refused_total", {"budget": budget}
    )


async def settle(
    h: Harness,
    who: AgentRecord,
    link: AgentLink,
    answer: Callable[[str], commands_pb2.CommandResult],
) -> tuple[CommandRecord, commands_pb2.ServerCommandMessage | None]:
    """Issue one command to `who`, answer it with `answer(id)`; return the final record the
    watcher had and what the server sent the agent after the result."""
    finished: list[CommandRecord] = []
    (record,) = await h.issue([who], watch=finished.append)
    await next_message(link)  # the command itself
    h.service.submit_result(who.id, answer(record.id), link)
    ack = await next_message(link)
    (final,) = finished
    return final, ack


def test_a_result_over_its_agents_byte_budget_is_stored_as_failed_and_acknowledged(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(sqlite_store, byte_budget=AgentByteBudget(2000, 3600.0))
    hog, neighbour = agent("hog"), agent("neighbour")
    caplog.set_level(logging.WARNING, logger="rmm_server.commands")

    async def run() -> list[tuple[CommandRecord, commands_pb2.ServerCommandMessage | None]]:
        h.service.start()
        try:
            hog_link = await h.service.connect(hog, commands_pb2.CommandHello())
            other_link = await h.service.connect(neighbour, commands_pb2.CommandHello())
            outcomes = [await settle(h, hog, hog_link, lambda c: printed(c, 1200))]
            # Over budget: a progress result is not stored, then twice a final one is refused.
            (record,) = await h.issue([hog])
            await next_message(hog_link)
            running = printed(record.id, 1200)
            running.status = Status.COMMAND_RUNNING
            h.service.submit_result(hog.id, running, hog_link)
            await asyncio.wait_for(h.service._results.join(), WAIT)  # type: ignore[union-attr]
            assert h_get(h, record.id).status == Status.COMMAND_SENT and hog_link.outbox.empty()
            failed = printed(record.id, 1200)
            failed.error = "a hostile agent's own words"
            h.service.submit_result(hog.id, failed, hog_link)
            ack = await next_message(hog_link)
            outcomes.append((h_get(h, record.id), ack))
            outcomes.append(await settle(h, hog, hog_link, lambda c: printed(c, 1200)))
            # The neighbour's results are its own budget's business.
            outcomes.append(await settle(h, neighbour, other_link, lambda c: printed(c, 1200)))
            return outcomes
        finally:
            await h.service.stop()

    (first, _), (second, ack2), (third, ack3), (other, _) = asyncio.run(run())
    assert first.status == Status.COMMAND_SUCCEEDED and not first.error
    assert other.status == Status.COMMAND_SUCCEEDED
    assert commands_pb2.CommandResult.FromString(other.result or b"").script.stdout == "x" * 1200
    for refused, ack in ((second, ack2), (third, ack3)):
        # Acknowledged like any final result: the agent stops resending it.
        assert ack is not None and ack.result_stored == refused.id
        stored = h_get(h, refused.id)
        assert stored.status == Status.COMMAND_FAILED
        assert stored.error.startswith(
            "agent storage budget reached (--agent-byte-budget 1.953 KiB per hour; "
            "resets at 2027-01-15 09:00:00 UTC): 1.211 KiB stored, this command result takes "
        )
        assert "; the result is not stored; the command is recorded as failed" in stored.error
        kept = commands_pb2.CommandResult.FromString(stored.result or b"")
        assert kept.status == Status.COMMAND_FAILED and kept.error == stored.error
        assert kept.script.stdout == "" and kept.script.stdout_truncated
        assert len(stored.result or b"") < 1000
    assert h_get(h, second.id).error.endswith("; the agent said: a hostile agent's own words")
    # Counted each time (the progress result too), logged once in the window.
    assert refusals(h, "agent_bytes") == 3.0 and refusals(h, "free_space") == 0.0
    said = [r for r in caplog.records if "refusing the command results of" in r.getMessage()]
    assert len(said) == 1 and f"of host-hog [{hog.id[:12]}]:" in said[0].getMessage()
    outcomes = [entry[4] for entry in h.audited if entry[1] == "command.result"]
    assert sum("failed: agent storage budget reached" in outcome for outcome in outcomes) == 2


def fake_statvfs(free: list[int]) -> Callable[[Path], os.statvfs_result]:
    """A statvfs saying `free[0]` bytes are free (4 KiB blocks)."""

    def statvfs(_path: Path) -> os.statvfs_result:
        blocks = free[0] // 4096
        return os.statvfs_result((4096, 4096, 10**9, blocks, blocks, 10**6, 10**6, 10**6, 0, 255))

    return statvfs


def test_results_are_stored_as_failed_under_the_free_space_reserve(
    sqlite_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    MiB = 1024 * 1024
    free = [100 * MiB]
    reserve = FreeSpaceReserve(
        tmp_path, 10 * MiB, clock=Clock(0.0), statvfs=fake_statvfs(free), probe_seconds=0.0
    )
    h = Harness(sqlite_store, free_space=reserve)
    one, two = agent("one"), agent("two")
    caplog.set_level(logging.WARNING, logger="rmm_server.budgets")

    async def run() -> list[tuple[CommandRecord, commands_pb2.ServerCommandMessage | None]]:
        h.service.start()
        try:
            links = {
                who.id: await h.service.connect(who, commands_pb2.CommandHello())
                for who in (one, two)
            }
            outcomes = [await settle(h, one, links[one.id], lambda c: printed(c, 5000))]
            free[0] = 10 * MiB + 4096  # down to the reserve: nobody's output fits
            for who in (one, two):
                outcomes.append(await settle(h, who, links[who.id], lambda c: printed(c, 5000)))
            free[0] = 100 * MiB  # space freed
            outcomes.append(await settle(h, two, links[two.id], lambda c: printed(c, 5000)))
            return outcomes
        finally:
            await h.service.stop()

    statuses = [
        (final.status, ack.result_stored if ack else None) for final, ack in asyncio.run(run())
    ]
    assert [status for status, _ in statuses] == [
        Status.COMMAND_SUCCEEDED,
        Status.COMMAND_FAILED,
        Status.COMMAND_FAILED,
        Status.COMMAND_SUCCEEDED,
    ]
    assert all(acked for _, acked in statuses)
    refused = h_get(h, str(statuses[1][1]))
    assert refused.error.startswith("the server's disk is down to its reserve (")
    assert "kept free by --min-free-space): the command result is not stored" in refused.error
    assert b"xxxx" not in (refused.result or b"")
    assert refusals(h, "free_space") == 2.0 and refusals(h, "agent_bytes") == 0.0
    lows = [r for r in caplog.records if "under the reserve" in r.getMessage()]
    assert len(lows) == 1  # once when reached; once more when space is back
    assert "above the reserve again" in caplog.text
