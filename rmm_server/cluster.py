"""Several server replicas sharing one PostgreSQL: who leads the scheduler, and what the replicas
tell each other.

Agents connect to any replica. Each replica announces which agents hold a stream on it, so a
command issued through one replica reaches an agent connected to another, a result stored by one
reaches the operator waiting on another, and a revocation made on one cuts the agent wherever it
is. The messages travel by PostgreSQL LISTEN/NOTIFY on one channel: no polling, no broker beside
the database the replicas share anyway. A NOTIFY payload is at most 8000 bytes, so lists are cut
into several messages.

Exactly one replica leads the jobs that must run once (offline detection, command expiry,
escalation, pruning): the one holding a session-level advisory lock on a connection of its own.
When the leader dies its session ends, the lock goes with it, and another replica's next attempt
(every LEADER_RETRY_SECONDS) takes it.

With SQLite there is one process: `Cluster` is that process alone, always leading, and every
agent it knows is its own to export.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger(__name__)

CHANNEL = "rmm_cluster"
# pg_advisory locks take a bigint; this one is "rmm_lead" in ASCII.
LEADER_LOCK_KEY = int.from_bytes(b"rmm_lead", "big")
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more: leave room for the envelope.
MAX_PAYLOAD_BYTES = 7800
LEADER_RETRY_SECONDS = 3.0
HEARTBEAT_SECONDS = 5.0
# A replica not heard from for this long is gone: its agents count as connected nowhere.
REPLICA_TIMEOUT_SECONDS = 15.0
RECONNECT_SECONDS = 1.0
# The most stop() waits for the leader election to end and its session to close.
STOP_SECONDS = 5.0
# Asked of the PostgreSQL server for the leader's session, so that a leader whose host vanished
# (no FIN, no RST) loses its lock after about 5 + 3 x 5 = 20 s, not the OS default of 2 hours.
SERVER_KEEPALIVES = (
    "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
)

Handler = Callable[[dict[str, Any]], None]


class Export(IntEnum):
    """How much of an agent a replica's /metrics shows."""

    NONE = 0  # another replica holds it
    STATE = 1  # connected nowhere: the leader shows it up or down, without stale samples
    FULL = 2  # its streams are here: everything it reported


def one_line(exc: BaseException) -> str:
    """Return an error's message on one line (libpq's span several), or its type's name."""
    return " ".join(str(exc).split()) or type(exc).__name__


def default_replica_id(grpc_listen: str) -> str:
    """Return hostname:port for --replica-id's default."""
    port = grpc_listen.rpartition(":")[2]
    return f"{socket.gethostname()}:{port}"


def conninfo(url: str) -> str:
    """Return a libpq URL for psycopg from a server --db URL (postgresql+psycopg:// too)."""
    for prefix in ("postgresql+psycopg://", "postgres+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url.removeprefix(prefix)
    return url


def pack(replica: str, kind: str, key: str, values: Sequence[Any]) -> list[str]:
    """Return JSON payloads carrying `values` under `key`, each within MAX_PAYLOAD_BYTES."""
    envelope = len(json.dumps({"r": replica, "k": kind, key: []}))
    payloads: list[str] = []
    chunk: list[Any] = []
    size = envelope
    for value in values:
        cost = len(json.dumps(value)) + 2
        if chunk and size + cost > MAX_PAYLOAD_BYTES:
            payloads.append(json.dumps({"r": replica, "k": kind, key: chunk}))
            chunk, size = [], envelope
        chunk.append(value)
        size += cost
    if chunk or not values:
        payloads.append(json.dumps({"r": replica, "k": kind, key: chunk}))
    return payloads


class Cluster:
    """One server process alone (SQLite, or PostgreSQL without replicas): it leads, and every
    agent is its own."""

    replicated = False

    def __init__(self, replica_id: str, registry: CollectorRegistry | None = None) -> None:
        self.replica_id = replica_id
        self.handlers: dict[str, Handler] = {}
        self.leadership_callbacks: list[Callable[[bool], None]] = []
        self._local: dict[str, int] = {}  # agent id -> streams open on this replica
        self._leader_gauge: Gauge | None = None
        if registry is not None:
            self._leader_gauge = Gauge(
                "rmm_server_leader",
                "1 while this replica leads the scheduler (offline detection, expiry), else 0.",
                ["replica"],
                registry=registry,
            )
            self._leader_gauge.labels(replica=replica_id).set(1 if self.is_leader else 0)

    @property
    def is_leader(self) -> bool:
        """Say whether this process runs the jobs that must run once."""
        return True

    async def start(self) -> None:
        """Start talking to the other replicas (nothing to do alone)."""

    async def stop(self) -> None:
        """Stop talking to the other replicas and give up leadership."""

    def live_replicas(self) -> list[str]:
        """Return the replicas heard from lately, this one included."""
        return [self.replica_id]

    def on(self, kind: str, handler: Handler) -> None:
        """Call `handler` with each message of `kind` another replica sends."""
        self.handlers[kind] = handler

    def publish(self, kind: str, key: str = "a", values: Sequence[Any] = ()) -> None:
        """Tell the other replicas something (alone: nobody to tell)."""

    def attach(self, agent_id: str) -> None:
        """Count one more stream of the agent on this replica."""
        count = self._local.get(agent_id, 0)
        self._local[agent_id] = count + 1
        if count == 0:
            self._attached(agent_id)

    def detach(self, agent_id: str) -> None:
        """Count one stream of the agent fewer on this replica."""
        count = self._local.get(agent_id, 0) - 1
        if count > 0:
            self._local[agent_id] = count
            return
        self._local.pop(agent_id, None)
        self._detached(agent_id)

    def _attached(self, agent_id: str) -> None:
        pass

    def _detached(self, agent_id: str) -> None:
        pass

    def is_local(self, agent_id: str) -> bool:
        """Say whether the agent has a stream open on this replica."""
        return agent_id in self._local

    def held_elsewhere(self, agent_id: str) -> bool:
        """Say whether a live other replica holds the agent's streams."""
        return False

    def export_of(self, agent_id: str) -> Export:
        """Return how much of the agent this replica's /metrics shows."""
        return Export.FULL

    def agent_changed(self, agent_ids: Iterable[str]) -> None:
        """Tell the other replicas to read these agents again (enrolled, rotated...)."""
        ids = list(agent_ids)
        if ids:
            self.publish("agent", "a", ids)


class PgCluster(Cluster):
    """A replica among others on one PostgreSQL: LISTEN/NOTIFY between them, an advisory lock
    for the leader."""

    replicated = True

    def __init__(
        self,
        url: str,
        replica_id: str,
        registry: CollectorRegistry | None = None,
        leader_retry_seconds: float = LEADER_RETRY_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        replica_timeout_seconds: float = REPLICA_TIMEOUT_SECONDS,
        on_reconnect: Callable[[], Any] | None = None,
    ) -> None:
        self.election = LeaderElection(url, replica_id, retry_seconds=leader_retry_seconds)
        super().__init__(replica_id, registry)
        self.url = conninfo(url)
        self.heartbeat_seconds = heartbeat_seconds
        self.replica_timeout_seconds = replica_timeout_seconds
        # Called (a coroutine function) after the listener (re)connects: notifications sent
        # while it was away are lost, so what they would have said is read again.
        self.on_reconnect = on_reconnect
        self._owners: dict[str, str] = {}  # agent id -> the other replica that last took it
        self._heard: dict[str, float] = {}  # replica -> monotonic time of its last message
        self._outbox: asyncio.Queue[tuple[str, str, list[Any]]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listen_conn: psycopg.AsyncConnection[Any] | None = None
        self.listening = asyncio.Event()
        # Fingerprints of what every replica must share (the command-signing key, the CA
        # agents pin), sent with each heartbeat: a replica with other keys is named in the log.
        self.keys: list[str] = []
        self._mismatched: set[str] = set()
        self.election.on_change = self._leadership_changed
        if registry is not None:
            Gauge(
                "rmm_server_replicas",
                "Server replicas this one heard from within the replica timeout (itself included).",
                registry=registry,
            ).set_function(lambda: float(len(self.live_replicas())))

    @property
    def is_leader(self) -> bool:
        return self.election.is_leader

    def _leadership_changed(self, leading: bool) -> None:
        if self._leader_gauge is not None:
            self._leader_gauge.labels(replica=self.replica_id).set(1 if leading else 0)
        for callback in self.leadership_callbacks:
            try:
                callback(leading)
            except Exception:
                log.exception("reacting to a change of leadership failed")

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self.election.run(), name="leader-election"),
            asyncio.create_task(self._listen(), name="cluster-listen"),
            asyncio.create_task(self._send(), name="cluster-publish"),
            asyncio.create_task(self._heartbeat(), name="cluster-heartbeat"),
        ]

    async def stop(self) -> None:
        # Say goodbye first, so the others stop counting on this replica's agents at once.
        if self._local:
            self.publish("off", "a", list(self._local))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), 2.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.election.stop()

    def publish(self, kind: str, key: str = "a", values: Sequence[Any] = ()) -> None:
        """Queue a message for the other replicas (safe from any thread)."""
        item = (kind, key, list(values))
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._outbox.put_nowait(item)
        else:
            loop.call_soon_threadsafe(self._outbox.put_nowait, item)

    # --- presence --------------------------------------------------------------------------

    def _attached(self, agent_id: str) -> None:
        # This replica is now the newest to hold the agent, whatever the others said before.
        self._owners.pop(agent_id, None)
        self.publish("on", "a", [agent_id])

    def _detached(self, agent_id: str) -> None:
        self.publish("off", "a", [agent_id])

    def _alive(self, replica: str) -> bool:
        heard = self._heard.get(replica)
        return heard is not None and time.monotonic() - heard <= self.replica_timeout_seconds

    def live_replicas(self) -> list[str]:
        """Return the replicas heard from lately, this one included."""
        return sorted({self.replica_id, *(r for r in self._heard if self._alive(r))})

    def held_elsewhere(self, agent_id: str) -> bool:
        owner = self._owners.get(agent_id)
        return owner is not None and self._alive(owner)

    def export_of(self, agent_id: str) -> Export:
        if self.held_elsewhere(agent_id):
            return Export.NONE
        if agent_id in self._local:
            return Export.FULL
        return Export.STATE if self.is_leader else Export.NONE

    # --- the channel -----------------------------------------------------------------------

    async def _connect(self, role: str) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            application_name=f"rmm-server {self.replica_id} {role}"[-63:],
            connect_timeout=10,
        )

    async def _listen(self) -> None:
        lost = False
        failing = False  # failed since the last connection that worked: repeats are debug
        while True:
            try:
                async with await self._connect("listen") as conn:
                    self._listen_conn = conn
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._heard[self.replica_id] = time.monotonic()
                    failing = False
                    if lost:
                        log.warning(
                            "listening to the other replicas again on PostgreSQL; reading back "
                            "what changed meanwhile"
                        )
                    # Everybody says again which agents it holds, so this replica's view is whole.
                    self.publish("up", "a", [])
                    if lost and self.on_reconnect is not None:
                        await self.on_reconnect()
                    self.listening.set()
                    async for note in conn.notifies():
                        self._receive(note.payload)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                lost = True
                # Once per outage, not once a second: the next line is the reconnection.
                log.log(
                    logging.DEBUG if failing else logging.ERROR,
                    "lost the PostgreSQL LISTEN connection of replica %s (%s): commands, results "
                    "and revocations from other replicas wait; reconnecting every %.0f s",
                    self.replica_id,
                    one_line(exc),
                    RECONNECT_SECONDS,
                )
                failing = True
            except Exception:  # a bug in a handler must not end the listener for good
                self.listening.clear()
                lost = True
                log.exception("the cluster listener failed; reconnecting")
            finally:
                self._listen_conn = None
            await asyncio.sleep(RECONNECT_SECONDS)

    def _receive(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            replica = str(message["r"])
            kind = str(message["k"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a message on %s that is not ours: %.200r", CHANNEL, payload)
            return
        self._heard[replica] = time.monotonic()
        if replica == self.replica_id:
            return
        agents = [str(a) for a in message.get("a", ())] if kind in ("on", "off") else []
        if kind == "on":
            for agent_id in agents:
                self._owners[agent_id] = replica
        elif kind == "off":
            for agent_id in agents:
                if self._owners.get(agent_id) == replica:
                    del self._owners[agent_id]
        elif kind == "up" and self._local:
            self.publish("on", "a", list(self._local))
        elif kind == "hb":
            self._check_keys(replica, [str(key) for key in message.get("l", ())[1:]])
        handler = self.handlers.get(kind)
        if handler is not None:
            try:
                handler(message)
            except Exception:
                log.exception("handling a %r message from replica %s failed", kind, replica)

    def _check_keys(self, replica: str, keys: list[str]) -> None:
        if not keys or not self.keys or keys == self.keys:
            self._mismatched.discard(replica)
            return
        if replica in self._mismatched:
            return
        self._mismatched.add(replica)
        log.error(
            "replica %s has another command-signing key or CA than this replica %s (%s, here "
            "%s): agents refuse the commands of one of them and cannot reconnect across them; "
            "copy command-signing.key and tls/ from one data directory to every replica",
            replica,
            self.replica_id,
            ",".join(keys),
            ",".join(self.keys),
        )

    async def _send(self) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        failing = False  # failed since the last send that worked: repeats are debug
        try:
            while True:
                batch = [await self._outbox.get()]
                while not self._outbox.empty():
                    batch.append(self._outbox.get_nowait())
                payloads = self._payloads(batch)
                while True:
                    try:
                        if conn is None or conn.closed:
                            conn = await self._connect("notify")
                        async with conn.pipeline():
                            for payload in payloads:
                                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                        if failing:
                            log.info("telling the other replicas again: PostgreSQL is back")
                        failing = False
                        break
                    except (psycopg.Error, OSError) as exc:
                        log.log(
                            logging.DEBUG if failing else logging.ERROR,
                            "cannot tell the other replicas %d messages (%s); retrying every "
                            "%.0f s",
                            len(payloads),
                            one_line(exc),
                            RECONNECT_SECONDS,
                        )
                        failing = True
                        if conn is not None:
                            await conn.close()
                        conn = None
                        await asyncio.sleep(RECONNECT_SECONDS)
                for _ in batch:
                    self._outbox.task_done()
        finally:
            if conn is not None:
                await conn.close()

    def _payloads(self, batch: list[tuple[str, str, list[Any]]]) -> list[str]:
        # Messages of one kind are merged (a reconnect storm is a few big NOTIFYs, not
        # thousands), in the order their kinds first appear.
        merged: dict[tuple[str, str], list[Any]] = {}
        for kind, key, values in batch:
            merged.setdefault((kind, key), []).extend(values)
        payloads: list[str] = []
        for (kind, key), values in merged.items():
            payloads.extend(pack(self.replica_id, kind, key, values))
        return payloads

    async def _heartbeat(self) -> None:
        while True:
            self.publish("hb", "l", [1 if self.is_leader else 0, *self.keys])
            await asyncio.sleep(self.heartbeat_seconds)
            # Our own heartbeat comes back through our own LISTEN: when it stops, that
            # connection is dead without having said so (a cut network): make a new one.
            heard = self._heard.get(self.replica_id)
            conn = self._listen_conn
            silent = heard is not None and time.monotonic() - heard > self.replica_timeout_seconds
            if conn is not None and silent:
                log.error(
                    "heard nothing on the LISTEN connection for %.0f s: replacing it",
                    self.replica_timeout_seconds,
                )
                self._heard[self.replica_id] = time.monotonic()
                await conn.close()
            for agent_id, owner in list(self._owners.items()):
                if not self._alive(owner):
                    del self._owners[agent_id]


class LeaderElection:
    """Hold a PostgreSQL advisory lock on a connection of our own while we can; whoever holds it
    leads."""

    def __init__(
        self,
        url: str,
        replica_id: str,
        key: int = LEADER_LOCK_KEY,
        retry_seconds: float = LEADER_RETRY_SECONDS,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.url = conninfo(url)
        self.replica_id = replica_id
        self.key = key
        self.retry_seconds = retry_seconds
        self.on_change = on_change
        self.is_leader = False
        self.changed = asyncio.Event()  # set at each change (tests wait on it)
        self._followed = False  # another replica held the lock at one of our attempts
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def _set(self, leading: bool, why: str, expected: bool = False) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        if leading:
            # A takeover (another replica led until now) is worth an operator's eye; the
            # first replica of a cluster taking the lock at start is not.
            log.log(
                logging.WARNING if self._followed else logging.INFO,
                "replica %s now leads the scheduler (%s)",
                self.replica_id,
                why,
            )
        else:
            log.log(
                logging.INFO if expected else logging.ERROR,
                "replica %s stopped leading the scheduler: %s",
                self.replica_id,
                why,
            )
        if self.on_change is not None:
            self.on_change(leading)
        self.changed.set()

    async def run(self) -> None:
        """Try for the lock every retry_seconds; while held, check the session still lives."""
        self._task = asyncio.current_task()
        failing = False  # failed since the last session that worked: repeats are debug
        while True:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=True,
                    application_name=f"rmm-server {self.replica_id} leader"[-63:],
                    connect_timeout=10,
                    options=SERVER_KEEPALIVES,
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=5,
                    keepalives_count=3,
                )
                async with self._conn as conn:
                    failing = False
                    while True:
                        await asyncio.wait_for(self._poll(conn), self.retry_seconds * 3)
                        await asyncio.sleep(self.retry_seconds)
            except asyncio.CancelledError:
                self._set(False, "the server is stopping", expected=True)
                raise
            except (psycopg.Error, OSError, TimeoutError) as exc:
                # The lock lived in that session: whatever happened to it, it is not ours now.
                self._set(False, f"its database session was lost ({str(exc).strip() or 'timeout'})")
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "leader election for replica %s cannot reach PostgreSQL (%s); retrying every "
                    "%.0f s",
                    self.replica_id,
                    one_line(exc),
                    self.retry_seconds,
                )
                failing = True
            finally:
                self._conn = None
            await asyncio.sleep(self.retry_seconds)

    async def _poll(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self.is_leader:
            # Session-level locks are held until the session ends: a query that answers means
            # the session, and so the lock, is still ours.
            await conn.execute("SELECT 1")
            return
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
        row = await cursor.fetchone()
        if row is not None and row[0]:
            self._set(True, "it took the advisory lock")
        else:
            self._followed = True

    async def stop(self) -> None:
        """Give the lock up (closing the session releases it), within STOP_SECONDS."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            # asyncio.wait neither raises the task's CancelledError nor swallows a cancellation
            # of this stop(), and a session stuck in the driver cannot hold the server's stop.
            await asyncio.wait({task}, timeout=STOP_SECONDS)
            if not task.done():
                log.warning(
                    "leader election of replica %s did not end within %.0f s; stopping anyway",
                    self.replica_id,
                    STOP_SECONDS,
                )
        conn = self._conn
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), STOP_SECONDS)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("closing the leader session failed (%s)", one_line(exc))
        self._set(False, "the server is stopping", expected=True)
