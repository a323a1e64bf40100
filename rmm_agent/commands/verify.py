"""Trust nothing unsigned: check a command's signature, addressee and expiry before parsing on."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from rmm_proto import commands_pb2

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# Commands carry the server's clock; an agent whose clock is off by up to this much still
# accepts a command that has not expired by the server's clock.
CLOCK_SKEW_SECONDS = 15 * 60.0
ED25519_PUBLIC_KEY_BYTES = 32


class CommandRefused(Exception):
    """A command the agent will not run, and why."""

    def __init__(self, reason: str, command_id: str = "", operator: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.command_id = command_id
        self.operator = operator


def _unverified(payload: bytes) -> commands_pb2.Command:
    """Parse a command only to name it in a refusal; its fields are not to be trusted."""
    command = commands_pb2.Command()
    with contextlib.suppress(DecodeError):
        command.ParseFromString(payload)
    return command


def _utc(timestamp: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    except (OverflowError, OSError, ValueError):  # past the years the C library can show
        return f"{timestamp!r} (unix seconds)"


class CommandVerifier:
    """Check commands against the server key this agent pinned at enrollment."""

    def __init__(
        self,
        public_key: bytes,
        agent_id: str,
        clock: Callable[[], float] = time.time,
        skew_seconds: float = CLOCK_SKEW_SECONDS,
    ) -> None:
        # The crypto library (about 6 MB resident) is loaded by the first command, not at start:
        # most agents go days without one. The length is what from_public_bytes() would refuse.
        if len(public_key) != ED25519_PUBLIC_KEY_BYTES:
            raise ValueError(
                f"the server's command key is {len(public_key)} bytes, not the "
                f"{ED25519_PUBLIC_KEY_BYTES} of an Ed25519 public key: enroll this agent again"
            )
        self._public_key = public_key
        self._key: Ed25519PublicKey | None = None
        self.agent_id = agent_id
        self.clock = clock
        self.skew_seconds = skew_seconds

    def verify(self, signed: commands_pb2.SignedCommand) -> commands_pb2.Command:
        """Return the command if the server signed it for this agent and it is current."""
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

        if not signed.signature:
            claimed = _unverified(signed.command)
            raise CommandRefused(
                "unsigned command: this agent runs only commands signed by its server",
                claimed.id,
                claimed.operator,
            )
        if self._key is None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
                Ed25519PublicKey,
            )

            self._key = Ed25519PublicKey.from_public_bytes(self._public_key)
        try:
            self._key.verify(signed.signature, signed.command)
        except InvalidSignature:
            claimed = _unverified(signed.command)
            raise CommandRefused(
                "the signature does not match the server key pinned at enrollment: the command "
                "was forged or altered on the way",
                claimed.id,
                claimed.operator,
            ) from None
        try:
            command = commands_pb2.Command.FromString(signed.command)
        except DecodeError as exc:
            raise CommandRefused(f"a signed message that is not a command: {exc}") from None
        if not command.id:
            raise CommandRefused("a signed command without an id", "", command.operator)
        if command.agent_id != self.agent_id:
            raise CommandRefused(
                f"the command is addressed to agent {command.agent_id!r}, not this one",
                command.id,
                command.operator,
            )
        # NaN compares false with everything and +inf never passes: either would make a
        # command valid for ever.
        window = (command.issued_at, command.expires_at)
        if not (math.isfinite(window[0]) and math.isfinite(window[1])):
            raise CommandRefused(
                f"the command's time window {window!r} is not a window of time",
                command.id,
                command.operator,
            )
        now = self.clock()
        skew = f"{self.skew_seconds:.0f}s"
        if now > command.expires_at + self.skew_seconds:
            raise CommandRefused(
                f"the command expired {now - command.expires_at:.0f}s ago by this host's clock "
                f"(it was issued at {_utc(command.issued_at)} by the server's; {skew} of clock "
                f"skew is allowed): if it was sent just now, this host's clock may be off, "
                "check its time synchronisation (NTP)",
                command.id,
                command.operator,
            )
        if now < command.issued_at - self.skew_seconds:
            raise CommandRefused(
                f"the command is not valid yet: it was issued at {_utc(command.issued_at)} by "
                f"the server's clock, {command.issued_at - now:.0f}s ahead of this host's "
                f"({skew} of clock skew is allowed): this host's clock or the server's may be "
                "off, check their time synchronisation (NTP)",
                command.id,
                command.operator,
            )
        if not 0 < command.issued_at <= command.expires_at:
            raise CommandRefused(
                f"the command's time window {window!r} is not a window of time",
                command.id,
                command.operator,
            )
        if command.WhichOneof("action") is None:
            raise CommandRefused(
                "the command names no action this agent knows: upgrade the agent",
                command.id,
                command.operator,
            )
        return command
