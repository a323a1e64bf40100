"""The agent's command stream: receive signed commands, run them, send results back.

One thread keeps the stream open (reconnecting with back-off and jitter) and hands each
command to a small pool, so a long script never holds up a process listing. Every command is
checked (signature, addressee, expiry), recorded in the local history before it runs (so a
redelivered or replayed one never runs twice), shown to or asked of the logged-in users as the
server's consent mode says, run, and its result kept until the server says it stored it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from rmm_agent import __version__
from rmm_agent.actions import INTERACTIVE, clear_pending_reboot, execute, pending_reboot
from rmm_agent.actions.base import ActionContext
from rmm_agent.commands.history import CommandHistory, status_word
from rmm_agent.commands.verify import CommandRefused, CommandVerifier
from rmm_agent.config import AgentConfig
from rmm_agent.consent import Consent, ConsentSettings
from rmm_agent.runner import Backoff
from rmm_agent.state import Identity
from rmm_agent.transport import describe_rpc_error
from rmm_common.command_summary import describe
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2_grpc, commands_pb2

log = logging.getLogger(__name__)
Status = commands_pb2.CommandStatus
MAX_PARALLEL_COMMANDS = 4


def _process_started_at(clock: Callable[[], float]) -> float:
    try:
        import psutil  # noqa: PLC0415

        return float(psutil.Process(os.getpid()).create_time())
    except Exception:  # an estimate is fine for a hello message
        return clock()


def _boot_time() -> float:
    import psutil  # noqa: PLC0415

    return float(psutil.boot_time())


class CommandChannel:
    """Run the command stream in its own thread until `stop_event` is set."""

    def __init__(
        self,
        identity: Identity,
        state_dir: Path,
        channel: grpc.Channel,
        config: AgentConfig,
        collect_now: Callable[[], int],
        stop_event: threading.Event,
        consent: Consent | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.state_dir = state_dir
        self.channel = channel
        self.config = config
        self.collect_now = collect_now
        self.stop_event = stop_event
        self.clock = clock
        self.consent = consent or Consent(ConsentSettings.from_config(config))
        self.history = CommandHistory.open(state_dir, clock)
        self.verifier = CommandVerifier(
            bytes.fromhex(identity.command_public_key), identity.agent_id, clock=clock
        )
        self.started_at = _process_started_at(clock)
        self._outgoing: queue.Queue[commands_pb2.AgentCommandMessage | None] = queue.Queue()
        self._pool = ThreadPoolExecutor(MAX_PARALLEL_COMMANDS, thread_name_prefix="command")
        self._thread: threading.Thread | None = None
        self._disconnected_at = 0.0
        self._disconnect_reason = ""
        self._connected = False
        self._call: grpc.Future | None = None
        self._recover()

    # --- start-up -------------------------------------------------------------------------

    def _recover(self) -> None:
        """Finish what the previous agent process left: a reboot to confirm, runs cut short."""
        keep: set[str] = set()
        confirmed = pending_reboot(self.state_dir, self.clock)
        if confirmed is not None:
            log.info("back after the reboot asked for by command %s", confirmed.command_id)
            self.history.finish(confirmed)
            clear_pending_reboot(self.state_dir, confirmed.command_id)
            keep.add(confirmed.command_id)
        for command_id in self.history.interrupted(keep):
            now = self.clock()
            log.warning(
                "command %s was cut short when the agent stopped; not run again", command_id
            )
            self.history.finish(
                commands_pb2.CommandResult(
                    command_id=command_id,
                    status=Status.COMMAND_FAILED,
                    error="the agent stopped while this command ran (crash, kill or restart); "
                    "it was not run again",
                    finished_at=now,
                )
            )
        self.history.prune()

    def start(self) -> threading.Thread:
        """Start the stream thread."""
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        """End the stream; running commands finish in the pool (bounded by their timeouts)."""
        self.stop_event.set()
        self._outgoing.put(None)
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- the stream -----------------------------------------------------------------------

    def _hello(self) -> commands_pb2.AgentCommandMessage:
        return commands_pb2.AgentCommandMessage(
            hello=commands_pb2.CommandHello(
                agent_started_at=self.started_at,
                boot_time=_boot_time(),
                agent_version=__version__,
                disconnected_at=self._disconnected_at,
                disconnect_reason=self._disconnect_reason,
            )
        )

    def _requests(self, call_done: threading.Event) -> Iterator[commands_pb2.AgentCommandMessage]:
        yield self._hello()
        for result in self.history.undelivered():
            yield commands_pb2.AgentCommandMessage(result=result)
        while not self.stop_event.is_set() and not call_done.is_set():
            try:
                message = self._outgoing.get(timeout=1.0)
            except queue.Empty:
                continue
            if message is None:
                return
            yield message

    def _run(self) -> None:
        stub = agent_pb2_grpc.AgentServiceStub(self.channel)
        backoff = Backoff()
        while not self.stop_event.is_set():
            call_done = threading.Event()
            # Read for each stream: the report stream's credential rotation replaces it.
            metadata = bearer_metadata(self.identity.credential)
            call = stub.Commands(self._requests(call_done), metadata=metadata)
            self._call = call
            try:
                call.initial_metadata()  # the server sends headers once it took the hello
                if call.done():
                    # No headers came: the stream never opened (refused, TLS handshake failed,
                    # no server). Counting it as open would reset the back-off: a retry storm
                    # against a server that can never be right.
                    call.result()  # raises why
                    reason = "the server ended the stream at once"
                else:
                    self._connected = True
                    backoff.reset()
                    log.info("command stream open to %s", self.identity.server)
                    for message in call:
                        self._on_message(message)
                    reason = "the server ended the stream"
            except grpc.RpcError as error:
                if self.stop_event.is_set():
                    return
                reason = describe_rpc_error(
                    error, self.identity.server, pinned=bool(self.identity.ca_cert_pem)
                )
                if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                    reason = "the server does not offer commands (older server)"
                if error.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    # Revoked or unknown: retrying cannot help. The report stream hears the same
                    # and stops the agent; this stream must not keep it alive meanwhile.
                    log.error("%s; no more remote commands", reason)
                    return
            finally:
                call_done.set()
                call.cancel()
            if self._connected:
                log.warning("command stream lost: %s", reason)
                self._disconnected_at = self.clock()
                self._disconnect_reason = reason
            self._connected = False
            self.stop_event.wait(backoff.next())

    def _on_message(self, message: commands_pb2.ServerCommandMessage) -> None:
        if message.HasField("command"):
            self._pool.submit(self._handle, message.command)
        elif message.result_stored:
            self.history.mark_delivered(message.result_stored)

    def _deliver(self, result: commands_pb2.CommandResult) -> None:
        self.history.finish(result)
        self._outgoing.put(commands_pb2.AgentCommandMessage(result=result))

    # --- one command ----------------------------------------------------------------------

    def _handle(self, signed: commands_pb2.SignedCommand) -> None:
        try:
            self._handle_verified(signed)
        except Exception:  # one broken command must not end the pool's worker
            log.exception("handling a command failed")

    def _handle_verified(self, signed: commands_pb2.SignedCommand) -> None:
        try:
            command = self.verifier.verify(signed)
        except CommandRefused as refusal:
            log.warning(
                "refused command %s (from %s): %s",
                refusal.command_id or "?",
                refusal.operator or "?",
                refusal.reason,
            )
            self.history.refused(refusal.command_id, refusal.operator, "", refusal.reason)
            if refusal.command_id:
                now = self.clock()
                self._outgoing.put(
                    commands_pb2.AgentCommandMessage(
                        result=commands_pb2.CommandResult(
                            command_id=refusal.command_id,
                            status=Status.COMMAND_REFUSED,
                            error=refusal.reason,
                            started_at=now,
                            finished_at=now,
                        )
                    )
                )
            return
        summary = describe(command)
        if not self.history.begin(command, summary):
            self._already_seen(command, summary)
            return
        log.info("running command %s from %s: %s", command.id, command.operator, summary)
        result = self._with_consent(command, summary)
        if result is None:
            context = ActionContext(
                command=command,
                config=self.config,
                state_dir=self.state_dir,
                deadline=time.monotonic() + (command.timeout_seconds or 60.0),
                collect_now=self.collect_now,
                send_later=self._deliver,
                clock=self.clock,
            )
            result = execute(command, context)
        log.info(
            "command %s %s%s",
            command.id,
            status_word(result.status),
            f": {result.error}" if result.error else "",
        )
        self._deliver(result)

    def _already_seen(self, command: commands_pb2.Command, summary: str) -> None:
        stored = self.history.result(command.id)
        if stored is None or stored.status == Status.COMMAND_RUNNING:
            log.info("command %s is running already; not starting it again", command.id)
            return
        log.warning(
            "command %s (%s) already ran; refusing to run it again and resending its result",
            command.id,
            summary,
        )
        stored.duplicate = True
        if not stored.error:
            stored.error = "already ran; this is the result kept from then"
        self._outgoing.put(commands_pb2.AgentCommandMessage(result=stored))

    def _with_consent(
        self, command: commands_pb2.Command, summary: str
    ) -> commands_pb2.CommandResult | None:
        """Tell or ask the logged-in users; return a DECLINED result when they said no."""
        if command.consent == commands_pb2.CONSENT_NOTIFY:
            told = self.consent.notify(command.operator, summary)
            if told:
                log.info("told %s about command %s", ", ".join(told), command.id)
            return None
        action = command.WhichOneof("action") or ""
        if command.consent != commands_pb2.CONSENT_ASK or action not in INTERACTIVE:
            return None
        answer = self.consent.ask(command.operator, summary)
        if answer.approved:
            log.info("command %s: %s", command.id, answer.reason)
            return None
        now = self.clock()
        return commands_pb2.CommandResult(
            command_id=command.id,
            status=Status.COMMAND_DECLINED,
            error=answer.reason,
            started_at=now,
            finished_at=now,
        )
