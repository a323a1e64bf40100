"""The agent's command stream: receive signed commands, run them, send results back.

A coroutine on the agent's event loop (rmm_agent/transport.py, shared with the report stream)
keeps the stream open (reconnecting with back-off and jitter) and hands each command to a small
pool, so a long script never holds up a process listing. Every command is
checked (signature, addressee, expiry), recorded in the local history before it runs (so a
redelivered or replayed one never runs twice), shown to or asked of the logged-in users as the
server's consent mode says, run, and its result kept until the server says it stored it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from rmm_agent import __version__
from rmm_agent.commands.history import CommandHistory, status_word
from rmm_agent.commands.verify import CommandRefused, CommandVerifier
from rmm_agent.config import AgentConfig
from rmm_agent.runner import Backoff
from rmm_agent.state import Identity
from rmm_agent.transport import StreamLink, describe_rpc_error, stream_failure
from rmm_common.command_summary import describe
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2_grpc, commands_pb2

if TYPE_CHECKING:
    from rmm_agent.consent import Consent

log = logging.getLogger(__name__)
Status = commands_pb2.CommandStatus
MAX_PARALLEL_COMMANDS = 4
# rmm_agent.actions.reboot.PENDING_FILE (a test holds them equal). Looked for here so that an
# agent with no reboot to confirm does not load every action, and the consent dialogs, at start:
# they are imported when the first command comes.
REBOOT_PENDING_FILE = "reboot_pending.json"


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
    """Run the command stream on the link's loop until `stop_event` is set."""

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
        link: StreamLink | None = None,
    ) -> None:
        """`link` runs the stream (the agent shares one with the report stream); without one
        the channel makes its own at start(): StreamLink.for_channel(channel)."""
        self.identity = identity
        self.state_dir = state_dir
        self.channel = channel
        self.config = config
        self.collect_now = collect_now
        self.stop_event = stop_event
        self.clock = clock
        self._consent = consent
        self.history = CommandHistory.open(state_dir, clock)
        self.verifier = CommandVerifier(
            bytes.fromhex(identity.command_public_key), identity.agent_id, clock=clock
        )
        self.started_at = _process_started_at(clock)
        self._link = link
        self._owns_link = link is None
        # Results and refusals to send, put by the pool's threads through the link's loop; kept
        # across streams (each result is in the history too, resent if undelivered).
        self._outgoing: asyncio.Queue[commands_pb2.AgentCommandMessage | None] = asyncio.Queue()
        # Threads start when the first command comes: an agent never sent one keeps none.
        self._pool = ThreadPoolExecutor(MAX_PARALLEL_COMMANDS, thread_name_prefix="command")
        self._running: concurrent.futures.Future[None] | None = None
        self._disconnected_at = 0.0
        self._disconnect_reason = ""
        self._connected = False
        self._recover()

    # --- start-up -------------------------------------------------------------------------

    def _recover(self) -> None:
        """Finish what the previous agent process left: a reboot to confirm, runs cut short."""
        keep: set[str] = set()
        confirmed = None
        if (self.state_dir / REBOOT_PENDING_FILE).exists():
            from rmm_agent.actions import clear_pending_reboot, pending_reboot  # noqa: PLC0415

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

    @property
    def consent(self) -> Consent:
        """How commands are shown to or asked of the logged-in users (made at first use)."""
        if self._consent is None:
            from rmm_agent.consent import Consent, ConsentSettings  # noqa: PLC0415

            self._consent = Consent(ConsentSettings.from_config(self.config))
        return self._consent

    @property
    def link(self) -> StreamLink:
        """The loop and channel the stream runs on (made at start() when none was given)."""
        if self._link is None:
            self._link = StreamLink.for_channel(self.channel)
        return self._link

    def start(self) -> concurrent.futures.Future[None]:
        """Start the stream on the link's loop; return the future of its end."""
        self._running = self.link.submit(self._run())
        return self._running

    def stop(self) -> None:
        """End the stream; running commands finish in the pool (bounded by their timeouts)."""
        self.stop_event.set()
        running = self._running
        if running is not None:
            running.cancel()  # the call is cancelled with the coroutine
            with contextlib.suppress(Exception):
                running.result(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_link and self._link is not None:
            self._link.close()

    def _post(self, message: commands_pb2.AgentCommandMessage) -> None:
        """Queue `message` for the stream (from a pool thread or the loop)."""
        self.link.call_soon(self._outgoing.put_nowait, message)

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

    async def _requests(
        self, call_done: asyncio.Event
    ) -> AsyncIterator[commands_pb2.AgentCommandMessage]:
        yield self._hello()
        for result in self.history.undelivered():
            yield commands_pb2.AgentCommandMessage(result=result)
        ended = asyncio.ensure_future(call_done.wait())
        try:
            while not self.stop_event.is_set():
                # grpc stops reading this generator only when it cancels a call still running:
                # one that ended by itself must not take the next stream's results.
                taking = asyncio.ensure_future(self._outgoing.get())
                await asyncio.wait((taking, ended), return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    taking.cancel()  # a cancelled get() takes nothing from the queue
                    return
                message = taking.result()
                if message is None:
                    return
                yield message
        finally:
            ended.cancel()

    async def _run(self) -> None:
        stub = agent_pb2_grpc.AgentServiceStub(self.link.channel)
        backoff = Backoff()
        while not self.stop_event.is_set():
            call_done = asyncio.Event()
            # Read for each stream: the report stream's credential rotation replaces it.
            metadata = bearer_metadata(self.identity.credential)
            call = stub.Commands(self._requests(call_done), metadata=metadata)
            try:
                await call.initial_metadata()  # the server sends headers once it took the hello
                if call.done():
                    # No headers came: the stream never opened (refused, TLS handshake failed,
                    # no server). Counting it as open would reset the back-off: a retry storm
                    # against a server that can never be right.
                    failure = await stream_failure(call)
                    if failure is not None:
                        raise failure
                    reason = "the server ended the stream at once"
                else:
                    self._connected = True
                    backoff.reset()
                    log.info("command stream open to %s", self.identity.server)
                    async for message in call:
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
            await asyncio.sleep(backoff.next())

    def _on_message(self, message: commands_pb2.ServerCommandMessage) -> None:
        if message.HasField("command"):
            self._pool.submit(self._handle, message.command)
        elif message.result_stored:
            self.history.mark_delivered(message.result_stored)

    def _deliver(self, result: commands_pb2.CommandResult) -> None:
        self.history.finish(result)
        self._post(commands_pb2.AgentCommandMessage(result=result))

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
                self._post(
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
            from rmm_agent.actions import execute  # noqa: PLC0415
            from rmm_agent.actions.base import ActionContext  # noqa: PLC0415

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
        self._post(commands_pb2.AgentCommandMessage(result=stored))

    def _with_consent(
        self, command: commands_pb2.Command, summary: str
    ) -> commands_pb2.CommandResult | None:
        """Tell or ask the logged-in users; return a DECLINED result when they said no."""
        from rmm_agent.consent import Requester  # noqa: PLC0415 - loaded with the first command

        if command.consent == commands_pb2.CONSENT_NOTIFY:
            told = self.consent.notify(Requester.of(command), summary)
            if told:
                log.info("told %s about command %s", ", ".join(told), command.id)
            return None
        from rmm_agent.actions import INTERACTIVE  # noqa: PLC0415

        action = command.WhichOneof("action") or ""
        if command.consent != commands_pb2.CONSENT_ASK or action not in INTERACTIVE:
            return None
        answer = self.consent.ask(Requester.of(command), summary)
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
