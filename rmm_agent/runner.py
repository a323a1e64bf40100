"""The agent's run loop: collect every interval, deliver over one long-lived stream.

Collection and delivery are apart: the main thread collects on time whether or not the server
answers, numbering each report and putting it in the on-disk spool (rmm_agent/spool.py); a sender
coroutine on the link's event loop (rmm_agent/transport.py: grpc.aio, nothing polls) keeps a
stream open and sends what is not yet acknowledged, in order, resending it after a reconnect or a
restart. The server stores each (agent, sequence) once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from rmm_agent.config import DEFAULT_SPOOL_MAX_BYTES, DEFAULT_SPOOL_MAX_REPORTS
from rmm_agent.report import ReportBuilder
from rmm_agent.sequence import Sequencer, SequenceUnavailable
from rmm_agent.service.sdnotify import ServiceNotifier
from rmm_agent.spool import Spool
from rmm_agent.state import Identity, Runtime, StateDir
from rmm_agent.transport import StreamLink, describe_rpc_error, is_tls_refusal
from rmm_common.errors import ConfigError
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc

if TYPE_CHECKING:
    # Only an agent under the self-update launcher makes one (update.command.attach_updater).
    from rmm_agent.update.updater import Updater

log = logging.getLogger(__name__)

# Reports read from the spool at a time: a week's backlog is streamed, never held in memory.
SEND_BATCH = 64
EXIT_OK = 0
EXIT_REFUSED = 3
# After a failed credential rotation, wait this long before the next acknowledgement may retry.
ROTATE_RETRY_SECONDS = 60.0


class Backoff:
    """Exponential back-off with full jitter, so a fleet does not reconnect in step."""

    def __init__(self, first: float = 1.0, cap: float = 60.0, rng: random.Random | None = None):
        self.first = first
        self.cap = cap
        self.attempt = 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        """Return how long to wait before the next attempt."""
        ceiling = min(self.cap, self.first * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Start again from the shortest wait."""
        self.attempt = 0


class AgentRunner:
    """Collect and deliver until told to stop."""

    # When a credential rotation may next be tried (monotonic seconds).
    _rotate_not_before = 0.0

    def __init__(
        self,
        identity: Identity,
        state: StateDir,
        builder: ReportBuilder,
        channel: grpc.Channel,
        interval_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        notifier: ServiceNotifier | None = None,
        spool_max_reports: int = DEFAULT_SPOOL_MAX_REPORTS,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        link: StreamLink | None = None,
    ) -> None:
        """`channel` serves the rare calls made outside the streams (an update's download);
        `link` runs the report stream (the agent shares one with the command stream; without
        one the runner makes its own: StreamLink.for_channel(channel))."""
        self.identity = identity
        self.state = state
        self.builder = builder
        self.channel = channel
        self.interval = interval_seconds
        self.monotonic = monotonic
        # systemd's READY/WATCHDOG/STOPPING; a no-op unless $NOTIFY_SOCKET is set.
        self.notifier = notifier or ServiceNotifier.from_env()
        self.runtime: Runtime = state.load_runtime()
        saved = state.load_sequence()
        self.spool = Spool.in_state_dir(
            state.path,
            spool_max_reports,
            spool_max_bytes,
            # If the spool file is damaged, these say how many reports were lost with it.
            damaged_hint=(saved.spool_pending, saved.spool_dropped) if saved else None,
        )
        # Numbers are reserved ahead and never given twice (rmm_agent/sequence.py): a reused one
        # would make the server take a new report for one it has.
        self.sequences = Sequencer(state, self.runtime.sequence, self.spool.last_sequence, saved)
        self.runtime.sequence = self.sequences.last
        self._runtime_unsaved = False
        self.stop_event = threading.Event()
        self._owns_link = link is None
        self.link = link if link is not None else StreamLink.for_channel(channel)
        # Set (on the link's loop) when a report is added, on stop and when a stream ends.
        self._changed = asyncio.Event()
        # Ends the sender's back-off early: on stop, and when the channel has the server back.
        self._reconnect = asyncio.Event()
        # Set once the main loop made its last report: the stream may end when all is sent.
        self._made_last = threading.Event()
        self.exit_code = EXIT_OK
        self._stream_generation = 0
        self._send_inventory = self.runtime.inventory_acked_hash == ""
        self._connected = False
        self._inventory_carried: dict[int, str] = {}
        # Reports are built by the main loop and, on a command, by collect_now().
        self._collect_lock = threading.Lock()
        # Set when the agent runs under the self-update launcher (rmm_agent.update).
        self.updater: Updater | None = None

    def stop(self) -> None:
        """Ask the loops to finish (safe from a signal handler)."""
        self.stop_event.set()
        self.notifier.stopping()
        self.link.call_soon(self._reconnect.set)
        self._wake_sender()

    def run(self) -> int:
        """Run until stop() or until the server refuses this agent; return an exit code."""
        sending = self.link.submit(self._send_loop())
        next_due = self.monotonic()
        while not self.stop_event.is_set():
            self.collect_now()
            self.notifier.cycle(self.interval)
            next_due += self.interval
            now = self.monotonic()
            if next_due < now:  # we fell behind (suspend, slow collector): skip, don't burst
                next_due = now + self.interval
            self.stop_event.wait(max(0.0, next_due - now))
        self._made_last.set()
        self._wake_sender()
        self._finish_sending(sending)
        waiting = self.spool.pending_estimate  # read while the file is open
        self.spool.close()
        self.sequences.close(waiting, self.spool.dropped)
        self.builder.close()
        if self._owns_link:
            self.link.close()
        return self.exit_code

    def _finish_sending(self, sending: concurrent.futures.Future[None]) -> None:
        """Give the stream 5 s to send what waits and be acknowledged, then cancel it."""
        try:
            sending.result(timeout=5)
            return
        except concurrent.futures.TimeoutError:
            sending.cancel()
        except Exception:  # a bug in the sender must not hide the exit code
            log.exception("the report stream failed")
            return
        with contextlib.suppress(Exception):
            sending.result(timeout=2)

    def collect_now(self) -> int:
        """Build and queue a report now (each interval, or a remote command asked); return its
        sequence, or 0 when no number can be reserved (the disk is full: see Sequencer)."""
        with self._collect_lock:
            return self._collect_locked()

    def _collect_locked(self) -> int:
        try:
            sequence = self.sequences.next()
        except SequenceUnavailable:
            return 0  # said once by the Sequencer; tried again at the next interval
        report = self.builder.build()
        self.runtime.sequence = sequence
        report.sequence = sequence
        report.interval_seconds = max(1, round(self.interval))
        report.dropped_reports = self.spool.dropped
        report.skipped_sequences = self.sequences.skipped
        if self._send_inventory or self.builder.inventory_hash != self.runtime.inventory_acked_hash:
            self.builder.attach_inventory(report)
            if report.HasField("inventory"):
                self._inventory_carried[report.sequence] = report.inventory.hash
        if self.updater is not None:
            self.updater.decorate(report)
        # Spooled first, counted after: a kill between the two leaves a report the counter does
        # not know yet (the Sequencer takes the spool's newest number too), never a counted
        # number with no report behind it.
        self.spool.add(report)
        self._wake_sender()
        try:
            self.state.save_runtime(self.runtime)
        except OSError as exc:
            # The number is reserved in sequence.json, so it is never given again: what is lost
            # is the exact count, and a crash now skips the rest of the block. Said once.
            if not self._runtime_unsaved:
                self._runtime_unsaved = True
                log.warning("cannot save the report counter in %s: %s", self.state.path, exc)
        else:
            self._runtime_unsaved = False
        self.sequences.note_spool(self.spool.pending_estimate, self.spool.dropped)
        return report.sequence

    def _wake_sender(self) -> None:
        """Wake the report stream's coroutines (from any thread): a report, a stop, a new stream."""
        self.link.call_soon(self._changed.set)

    async def _requests(self, generation: int) -> AsyncIterator[agent_pb2.Report]:
        sent = 0
        while True:
            while True:
                # Cleared before the spool is read: a report added after the read sets it again.
                self._changed.clear()
                with self.spool.changed:
                    if generation != self._stream_generation:
                        return
                    pending = self.spool.pending(sent, SEND_BATCH)
                    if pending:
                        # Under the same lock as the read: a report evicted from now on while
                        # on its way is not counted dropped unless its acknowledgement never comes.
                        self.spool.mark_sent(pending[-1].sequence)
                        break
                    if self._made_last.is_set():
                        break
                # Woken by a new report, stop() or a new stream; no timeout: nothing to poll.
                await self._changed.wait()
            if not pending:
                return  # stopping, and everything was sent: the server acknowledges, then ends
            # On stop what is waiting, the last report included, still goes out (run() bounds how
            # long that may take), so a stopped agent leaves nothing the server could have had.
            for report in pending:
                sent = report.sequence
                yield report

    async def _send_loop(self) -> None:
        # The command stream shares the channel and retries every few seconds: once it has the
        # server back, the report stream follows at once, not at the end of its own back-off
        # (up to a minute), so a spooled backlog arrives seconds after a server restart.
        watcher = asyncio.ensure_future(self._watch_channel())
        try:
            await self._stream_reports()
        finally:
            watcher.cancel()

    async def _watch_channel(self) -> None:
        """Set `_reconnect` when the channel becomes READY while the report stream is down.

        A grpc.aio channel says so without polling; over a synchronous channel (an embedder's)
        this does nothing and the back-off runs its course."""
        channel = self.link.channel
        if not isinstance(channel, grpc.aio.Channel):
            return
        state = channel.get_state()
        while True:
            await channel.wait_for_state_change(state)
            state = channel.get_state()
            if state is grpc.ChannelConnectivity.READY and not self._connected:
                self._reconnect.set()

    async def _pause(self, delay: float) -> None:
        """Wait `delay` seconds before reconnecting; a moment only once the channel is back."""
        try:
            await asyncio.wait_for(self._reconnect.wait(), delay)
        except TimeoutError:
            return
        if not self.stop_event.is_set():
            await asyncio.sleep(min(delay, 0.5))

    async def _stream_reports(self) -> None:
        stub = agent_pb2_grpc.AgentServiceStub(self.link.channel)
        backoff = Backoff()
        while not self.stop_event.is_set():
            self._reconnect.clear()
            # Read for each stream: a credential rotation replaces it between streams.
            metadata = bearer_metadata(self.identity.credential)
            with self.spool.changed:
                # The previous stream's request generator sees the new number and ends.
                self._stream_generation += 1
            self._changed.set()
            call = stub.StreamReports(self._requests(self._stream_generation), metadata=metadata)
            try:
                async for ack in call:
                    self._on_ack(ack)
                    backoff.reset()
                    if ack.rotate_credential and await self._rotate_credential(stub):
                        break  # reconnect with the new credential: the server then drops the old
            except grpc.RpcError as error:
                if self.stop_event.is_set():
                    return
                if error.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    log.error(
                        "%s; this agent stops: enroll it again",
                        self._describe(error),
                    )
                    self.exit_code = EXIT_REFUSED
                    self.stop()
                    return
                if is_tls_refusal(error):  # a server we do not trust: loud, every retry
                    log.error("%s", self._describe(error))
                elif self._connected:
                    log.warning("lost the server: %s", self._describe(error))
                else:
                    log.debug("still no server: %s", self._describe(error))
                self._connected = False
                await self._pause(backoff.next())
            finally:
                call.cancel()
                self._end_stream()

    def _end_stream(self) -> None:
        """The stream is over: its request generator stops reading, and the spool counts the
        reports it evicted while they were on this stream and unacknowledged as dropped."""
        with self.spool.changed:
            self._stream_generation += 1
            self.spool.stream_ended()
        self._changed.set()

    def _describe(self, error: grpc.RpcError) -> str:
        """Say what a failed call means, knowing whether this agent pinned its server's CA."""
        return describe_rpc_error(
            error, self.identity.server, pinned=bool(self.identity.ca_cert_pem)
        )

    async def _rotate_credential(self, stub: agent_pb2_grpc.AgentServiceStub) -> bool:
        """Get a new credential from the server and save it; True once it is in use.

        The server accepts the old credential until the new one is first used, so a failure
        anywhere here (or a crash before the save) leaves this agent with a working credential,
        and a later acknowledgement asks again.
        """
        if self.monotonic() < self._rotate_not_before:
            return False
        self._rotate_not_before = self.monotonic() + ROTATE_RETRY_SECONDS
        try:
            response = await stub.RotateCredential(
                agent_pb2.RotateCredentialRequest(),
                metadata=bearer_metadata(self.identity.credential),
                timeout=30,
            )
        except grpc.RpcError as error:
            log.warning(
                "cannot replace this agent's credential now (the old one keeps working): %s",
                self._describe(error),
            )
            return False
        try:
            self.state.save_identity(
                dataclasses.replace(self.identity, credential=response.credential)
            )
        except ConfigError as exc:
            log.error("%s; keeping the old credential, which the server still accepts", exc)
            return False
        # The command stream reads the same Identity when it reconnects.
        self.identity.credential = response.credential
        log.info(
            "credential replaced as the server asked and saved in %s; reconnecting with it",
            self.state.identity_path,
        )
        return True

    def _on_ack(self, ack: agent_pb2.ReportAck) -> None:
        if not self._connected:
            self._connected = True
            log.info("connected to %s; %d reports waiting", self.identity.server, len(self.spool))
        if ack.rejected:
            log.error("the server refused report %d for good: %s", ack.sequence, ack.rejected)
        if ack.next_sequence:
            with self._collect_lock:  # the main thread takes numbers under the same lock
                self.sequences.resume_at(ack.next_sequence)
        self.spool.ack(ack.sequence)
        carried = self._inventory_carried.pop(ack.sequence, None)
        for older in [seq for seq in self._inventory_carried if seq < ack.sequence]:
            del self._inventory_carried[older]
        if ack.need_inventory:
            self._send_inventory = True
            self.runtime.inventory_acked_hash = ""
        elif carried is not None and not ack.rejected:
            self.runtime.inventory_acked_hash = carried
            self._send_inventory = False
        if ack.report_interval_seconds:
            self.interval = float(ack.report_interval_seconds)
        if self.updater is not None:
            self.updater.on_ack(ack)
