"""Fuzz the agent's command verifier: it accepts a command if and only if it is exactly what the
server signed, addressed to this agent, and inside its time window (with the allowed clock skew).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_agent.commands.verify import CLOCK_SKEW_SECONDS, CommandRefused, CommandVerifier
from rmm_proto import commands_pb2
from rmm_server.signing import CommandSigner
from tests.fuzz import FUZZ, examples

SERVER = CommandSigner(Ed25519PrivateKey.generate())
OTHER_SERVER = CommandSigner(Ed25519PrivateKey.generate())
AGENT_ID = "7f3c0c8e5a1b4d2f9e6a0b1c2d3e4f50"
NOW = 1_800_000_000.0  # the server's clock when it signs

times = st.one_of(
    st.floats(-1e6, 1e6).map(lambda offset: NOW + offset),
    st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 1e300, NOW]),
)


@st.composite
def commands(draw: st.DrawFn) -> commands_pb2.Command:
    issued_at = draw(st.one_of(st.just(NOW), times))
    command = commands_pb2.Command(
        id=draw(st.sampled_from(["", "c1", "0123456789abcdef"])),
        agent_id=draw(st.sampled_from([AGENT_ID, "", "someone-else", AGENT_ID.upper()])),
        issued_at=issued_at,
        expires_at=draw(st.one_of(st.floats(0, 86_400).map(lambda ttl: issued_at + ttl), times)),
        timeout_seconds=60,
        operator=draw(st.sampled_from(["alice", "policy:p/r", ""])),
    )
    action = draw(st.sampled_from(["collect_now", "reboot", "list_processes", None]))
    if action is not None:
        getattr(command, action).SetInParent()
    return command


@dataclass
class Mutation:
    """What was done to a signed command on the way (nothing, for the honest case)."""

    kind: str
    where: int = 0
    value: int = 0


mutations = st.one_of(
    st.just(Mutation("none")),
    st.builds(
        Mutation,
        st.sampled_from(["payload", "signature", "truncate", "append"]),
        st.integers(0, 2000),
        st.integers(0, 255),
    ),
    st.sampled_from([Mutation("unsigned"), Mutation("other key"), Mutation("swap")]),
)


def mutate(signed: commands_pb2.SignedCommand, mutation: Mutation) -> commands_pb2.SignedCommand:
    payload, signature = bytearray(signed.command), bytearray(signed.signature)
    if mutation.kind == "payload" and payload:
        payload[mutation.where % len(payload)] = mutation.value
    elif mutation.kind == "signature":
        signature[mutation.where % len(signature)] = mutation.value
    elif mutation.kind == "truncate":
        del payload[mutation.where % (len(payload) + 1) :]
    elif mutation.kind == "append":
        payload += bytes([mutation.value])
    elif mutation.kind == "unsigned":
        signature = bytearray()
    elif mutation.kind == "other key":
        signature = bytearray(
            OTHER_SERVER.sign(commands_pb2.Command.FromString(bytes(payload))).signature
        )
    elif mutation.kind == "swap":  # a genuine signature, of another command
        other = commands_pb2.Command(id="other", agent_id=AGENT_ID, issued_at=NOW)
        signature = bytearray(SERVER.sign(other).signature)
    return commands_pb2.SignedCommand(command=bytes(payload), signature=bytes(signature))


def in_window(command: commands_pb2.Command, now: float) -> bool:
    issued, expires = command.issued_at, command.expires_at
    return (
        math.isfinite(issued)
        and math.isfinite(expires)
        and 0 < issued <= expires
        and issued - CLOCK_SKEW_SECONDS <= now <= expires + CLOCK_SKEW_SECONDS
    )


@settings(FUZZ, max_examples=examples(400))
@given(commands(), mutations, st.floats(-3600, 3600))
def test_accepted_if_and_only_if_signed_addressed_and_current(
    command: commands_pb2.Command, mutation: Mutation, clock_offset: float
) -> None:
    agent_now = NOW + clock_offset
    verifier = CommandVerifier(SERVER.public_key, AGENT_ID, clock=lambda: agent_now)
    signed = SERVER.sign(command)
    received = mutate(signed, mutation)
    exact = received.command == signed.command and received.signature == signed.signature
    should_accept = (
        exact
        and bool(command.id)
        and command.agent_id == AGENT_ID
        and command.WhichOneof("action") is not None
        and in_window(command, agent_now)
    )
    try:
        accepted = verifier.verify(received)
    except CommandRefused as refusal:
        assert not should_accept, f"refused a good command: {refusal.reason}"
        assert refusal.reason
        return
    assert should_accept, f"accepted {command} after {mutation}"
    assert accepted == command


def signed_at(issued_at: float, ttl: float = 300.0) -> commands_pb2.SignedCommand:
    command = commands_pb2.Command(
        id="c1", agent_id=AGENT_ID, issued_at=issued_at, expires_at=issued_at + ttl
    )
    command.collect_now.SetInParent()
    return SERVER.sign(command)


@pytest.mark.parametrize("agent_clock_offset", [-600.0, 600.0])
def test_a_clock_ten_minutes_off_still_runs_commands(agent_clock_offset: float) -> None:
    now = time.time()
    verifier = CommandVerifier(SERVER.public_key, AGENT_ID, clock=lambda: now + agent_clock_offset)
    assert verifier.verify(signed_at(now)).id == "c1"


def test_a_command_from_the_future_is_refused_saying_the_clock_may_be_off() -> None:
    """Found by the fuzzing: issued_at was not checked at all, so a command issued (by the
    server's clock) an hour after this host's now ran as if current."""
    now = time.time()
    verifier = CommandVerifier(SERVER.public_key, AGENT_ID, clock=lambda: now - 3600)
    with pytest.raises(CommandRefused) as caught:
        verifier.verify(signed_at(now, ttl=7200))
    reason = caught.value.reason
    assert "not valid yet" in reason and "3600s ahead of this host's" in reason
    assert "900s of clock skew is allowed" in reason and "clock" in reason and "NTP" in reason


def test_an_expired_command_says_the_clock_may_be_off() -> None:
    now = time.time()
    verifier = CommandVerifier(SERVER.public_key, AGENT_ID, clock=lambda: now + 3600)
    with pytest.raises(CommandRefused) as caught:
        verifier.verify(signed_at(now, ttl=60))
    reason = caught.value.reason
    assert "expired 3540s ago" in reason and "clock may be off" in reason


@pytest.mark.parametrize(
    ("issued_at", "expires_at"),
    [(math.nan, 1e10), (1.0, math.nan), (1.0, math.inf), (2e9, 1e9), (0.0, 1e10), (1e300, 1e300)],
)
def test_a_signed_command_without_a_real_time_window_is_refused(
    issued_at: float, expires_at: float
) -> None:
    """Found by the fuzzing: expires_at NaN or +inf made a command valid for ever, and an
    issued_at past year 9999 raised OverflowError out of the verifier instead of a refusal."""
    command = commands_pb2.Command(
        id="c1", agent_id=AGENT_ID, issued_at=issued_at, expires_at=expires_at
    )
    command.collect_now.SetInParent()
    verifier = CommandVerifier(SERVER.public_key, AGENT_ID, clock=time.time)
    with pytest.raises(CommandRefused):
        verifier.verify(SERVER.sign(command))
