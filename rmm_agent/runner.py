"""The agent's run loop: collect every interval, deliver over one long-lived stream.

Collection and delivery are apart: the main thread collects on time whether or not the server
answers, numbering each report; a sender thread keeps a stream open and sends what is not yet
acknowledged, resending it after a reconnect. The server stores each (agent, sequence) once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

import grpc

from rmm_agent.report import ReportBuilder
from rmm_agent.service.sdnotify import ServiceNotifier
from rmm_agent.state import Identity, Runtime, StateDir
from rmm_agent.transport import describe_rpc_error
from rmm_agent.update.updater import Updater
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

MAX_UNACKED_REPORTS = 2000
EXIT_OK = 0
EXIT_REFUSED = 3


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


class Outbox:
    """Reports not yet acknowledged, oldest first, bounded (the oldest go first when full)."""

    def __init__(self, limit: int = MAX_UNACKED_REPORTS) -> None:
        self.limit = limit
        self.dropped = 0
        self._reports: OrderedDict[int, agent_pb2.Report] = OrderedDict()
        self.changed = threading.Condition()

    def add(self, report: agent_pb2.Report) -> None:
        """Queue a report for delivery."""
        with self.changed:
            while len(self._reports) >= self.limit:
                self._reports.popitem(last=False)
                self.dropped += 1
            self._reports[report.sequence] = report
            self.changed.notify_all()

    def ack(self, sequence: int) -> None:
        """Forget every report up to and including `sequence`."""
        with self.changed:
            while self._reports and next(iter(self._reports)) <= sequence:
                self._reports.popitem(last=False)

    def after(self, sequence: int) -> list[agent_pb2.Report]:
        """Return queued reports newer than `sequence` (call with `changed` held)."""
        return [report for seq, report in self._reports.items() if seq > sequence]

    def __len__(self) -> int:
        return len(self._reports)


class AgentRunner:
    """Collect and deliver until told to stop."""

    def __init__(
        self,
        identity: Identity,
        state: StateDir,
        builder: ReportBuilder,
        channel: grpc.Channel,
        interval_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        notifier: ServiceNotifier | None = None,
    ) -> None:
        self.identity = identity
        self.state = state
        self.builder = builder
        self.channel = channel
        self.interval = interval_seconds
        self.monotonic = monotonic
        # systemd's READY/WATCHDOG/STOPPING; a no-op unless $NOTIFY_SOCKET is set.
        self.notifier = notifier or ServiceNotifier.from_env()
        self.runtime: Runtime = state.load_runtime()
        self.outbox = Outbox()
        self.stop_event = threading.Event()
        self.exit_code = EXIT_OK
        self._stream_generation = 0
        self._send_inventory = self.runtime.inventory_acked_hash == ""
        self._connected = False
        self._inventory_carried: dict[int, str] = {}
        # Set when the agent runs under the self-update launcher (rmm_agent.update).
        self.updater: Updater | None = None

    def stop(self) -> None:
        """Ask the loops to finish (safe from a signal handler)."""
        self.stop_event.set()
        self.notifier.stopping()
        with self.outbox.changed:
            self.outbox.changed.notify_all()

    def run(self) -> int:
        """Run until stop() or until the server refuses this agent; return an exit code."""
        sender = threading.Thread(target=self._send_loop, name="sender", daemon=True)
        sender.start()
        next_due = self.monotonic()
        while not self.stop_event.is_set():
            self._collect_once()
            self.notifier.cycle(self.interval)
            next_due += self.interval
            now = self.monotonic()
            if next_due < now:  # we fell behind (suspend, slow collector): skip, don't burst
                next_due = now + self.interval
            self.stop_event.wait(max(0.0, next_due - now))
        sender.join(timeout=5)
        self.builder.close()
        return self.exit_code

    def _collect_once(self) -> None:
        report = self.builder.build()
        self.runtime.sequence += 1
        report.sequence = self.runtime.sequence
        report.interval_seconds = max(1, round(self.interval))
        report.dropped_reports = self.outbox.dropped
        if self._send_inventory or self.builder.inventory_hash != self.runtime.inventory_acked_hash:
            self.builder.attach_inventory(report)
            if report.HasField("inventory"):
                self._inventory_carried[report.sequence] = report.inventory.hash
        if self.updater is not None:
            self.updater.decorate(report)
        try:
            self.state.save_runtime(self.runtime)
        except OSError as exc:
            # The number is in memory; a restart before the next successful save could reuse it,
            # and the server would take the new report for a duplicate. Say so loudly.
            log.error("cannot save the report sequence in %s: %s", self.state.path, exc)
        self.outbox.add(report)

    def _requests(self, generation: int) -> Iterator[agent_pb2.Report]:
        sent = 0
        while True:
            with self.outbox.changed:
                while (
                    not self.stop_event.is_set()
                    and generation == self._stream_generation
                    and not self.outbox.after(sent)
                ):
                    # Woken by a new report, stop() or a new stream; the timeout is a safety net.
                    self.outbox.changed.wait(30.0)
                if self.stop_event.is_set() or generation != self._stream_generation:
                    return
                pending = self.outbox.after(sent)
            for report in pending:
                sent = report.sequence
                yield report

    def _send_loop(self) -> None:
        stub = agent_pb2_grpc.AgentServiceStub(self.channel)
        metadata = bearer_metadata(self.identity.credential)
        backoff = Backoff()
        while not self.stop_event.is_set():
            with self.outbox.changed:
                # Wake the previous stream's request generator so its thread ends.
                self._stream_generation += 1
                self.outbox.changed.notify_all()
            call = stub.StreamReports(self._requests(self._stream_generation), metadata=metadata)
            try:
                for ack in call:
                    self._on_ack(ack)
                    backoff.reset()
            except grpc.RpcError as error:
                if self.stop_event.is_set():
                    return
                if error.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    log.error(
                        "%s; this agent stops: enroll it again",
                        describe_rpc_error(error, self.identity.server),
                    )
                    self.exit_code = EXIT_REFUSED
                    self.stop()
                    return
                if self._connected:
                    log.warning(
                        "lost the server: %s", describe_rpc_error(error, self.identity.server)
                    )
                else:
                    log.debug(
                        "still no server: %s", describe_rpc_error(error, self.identity.server)
                    )
                self._connected = False
                self.stop_event.wait(backoff.next())
            finally:
                call.cancel()

    def _on_ack(self, ack: agent_pb2.ReportAck) -> None:
        if not self._connected:
            self._connected = True
            log.info("connected to %s; %d reports waiting", self.identity.server, len(self.outbox))
        if ack.rejected:
            log.error("the server refused report %d for good: %s", ack.sequence, ack.rejected)
        self.outbox.ack(ack.sequence)
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
