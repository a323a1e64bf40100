"""What a consent prompt names (operator, MSP, ticket, maintenance window) is inside the
server's signature: changed on the way, the command is refused before anyone is asked."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rmm_agent.commands.verify import CommandRefused, CommandVerifier
from rmm_agent.consent import Requester
from rmm_proto import commands_pb2
from rmm_server.signing import CommandSigner

AGENT_ID = "agent-under-test"


def signed(signer: CommandSigner) -> commands_pb2.SignedCommand:
    now = time.time()
    command = commands_pb2.Command(
        id="c1",
        agent_id=AGENT_ID,
        issued_at=now,
        expires_at=now + 60,
        timeout_seconds=30,
        operator="alice",
        consent=commands_pb2.CONSENT_ASK,
        msp="Acme IT",
        ticket=42,
        reboot=commands_pb2.Reboot(),
    )
    return signer.sign(command)


def test_the_signed_fields_reach_the_prompt() -> None:
    signer = CommandSigner(Ed25519PrivateKey.generate())
    command = CommandVerifier(signer.public_key, AGENT_ID).verify(signed(signer))
    assert Requester.of(command) == Requester("alice", "Acme IT", 42, "")


@pytest.mark.parametrize(
    "tamper",
    [
        {"operator": "helpdesk"},
        {"msp": "Microsoft Support"},
        {"ticket": 43},
        {"maintenance_window": "weekly"},
    ],
    ids=["operator", "msp", "ticket", "window"],
)
def test_a_changed_prompt_field_fails_the_signature(tamper: dict[str, object]) -> None:
    signer = CommandSigner(Ed25519PrivateKey.generate())
    original = signed(signer)
    command = commands_pb2.Command.FromString(original.command)
    for name, value in tamper.items():
        setattr(command, name, value)
    forged = commands_pb2.SignedCommand(
        command=command.SerializeToString(deterministic=True), signature=original.signature
    )
    with pytest.raises(CommandRefused, match="forged or altered on the way"):
        CommandVerifier(signer.public_key, AGENT_ID).verify(forged)
