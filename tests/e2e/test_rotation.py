"""Credential rotation: an operator asks, the running agent replaces its credential and keeps
reporting, the old one is refused afterwards, identity.json holds the new one; and an agent that
crashes half-way is never locked out, across a server restart too."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import grpc

from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc
from tests.helpers import (
    ServerProcess,
    end_process,
    enroll_agent,
    rmm_json,
    start_agent,
    wait_for,
)


def credential_of(state_dir: Path) -> str:
    return str(json.loads((state_dir / "identity.json").read_text())["credential"])


class Agent:
    """Speaks AgentService directly, as an agent with a given credential would."""

    def __init__(self, server: ServerProcess) -> None:
        self.channel = grpc.insecure_channel(server.grpc_address)
        self.stub = agent_pb2_grpc.AgentServiceStub(self.channel)
        self.sequence = 0

    def report(self, credential: str) -> agent_pb2.ReportAck:
        self.sequence += 1
        report = agent_pb2.Report(
            sequence=self.sequence, collected_at=time.time(), interval_seconds=60
        )
        acks: list[agent_pb2.ReportAck] = list(
            self.stub.StreamReports(
                iter([report]), metadata=bearer_metadata(credential), timeout=10
            )
        )
        assert [ack.sequence for ack in acks] == [self.sequence] and not acks[0].rejected
        return acks[0]

    def refused(self, credential: str) -> str:
        """Return why a report with `credential` is refused, or "" when it is accepted."""
        try:
            self.report(credential)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
            self.sequence -= 1
            return error.details() or "?"
        return ""

    def rotate(self, credential: str) -> str:
        response = self.stub.RotateCredential(
            agent_pb2.RotateCredentialRequest(), metadata=bearer_metadata(credential), timeout=10
        )
        assert response.credential.startswith("rmma_") and response.credential != credential
        return str(response.credential)

    def close(self) -> None:
        self.channel.close()


def gauge(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else -1.0


def test_a_running_agent_rotates_its_credential_and_keeps_reporting(
    server: ServerProcess, tmp_path: Path
) -> None:
    state_dir = tmp_path / "agent"
    agent_id = enroll_agent(server, state_dir)
    old = credential_of(state_dir)
    log_path = tmp_path / "agent.log"
    process = start_agent(state_dir, log_path, 1.0)
    direct = Agent(server)
    try:
        wait_for(
            lambda: (
                gauge(server.metrics(), "rmm_server_command_streams") == 1
                and rmm_json(server, "agents", "show", agent_id)["last_sequence"] >= 2
            ),
            60,
            "the agent reporting with its command stream open",
        )
        asked = rmm_json(server, "agents", "rotate", agent_id)
        assert asked["id"] == agent_id and asked["rotation_requested"] is True
        before = rmm_json(server, "agents", "show", agent_id)["last_sequence"]
        new = wait_for(
            lambda: credential_of(state_dir) != old and credential_of(state_dir),
            60,
            "identity.json to hold a new credential",
        )
        assert new.startswith(f"rmma_{agent_id}_")
        details = wait_for(lambda: direct.refused(old), 60, "the old credential to be refused")
        assert "agent credential not recognised" in details
        wait_for(
            lambda: rmm_json(server, "agents", "show", agent_id)["last_sequence"] >= before + 3,
            60,
            "reports sent with the new credential",
        )
        # The command stream made with the old credential was ended, and came back with the new
        # one (the server logs the reason the agent gives for its gap).
        wait_for(
            lambda: (
                "this agent's credential was replaced: reconnect with the new one" in server.log()
                and gauge(server.metrics(), "rmm_server_command_streams") == 1
            ),
            60,
            "the command stream to reconnect with the new credential",
        )
        assert process.poll() is None, log_path.read_text()
        # A new stream with the new credential works and no longer asks for a rotation. Its
        # sequence lies far above the running agent's: a number the agent already used, with
        # other content, is refused as a reused sequence.
        direct.sequence = rmm_json(server, "agents", "show", agent_id)["last_sequence"] + 1000
        assert not direct.report(new).rotate_credential
    finally:
        try:
            direct.close()
        finally:
            end_process(process)
    log = log_path.read_text()
    assert "credential replaced as the server asked" in log, log
    assert "now uses its new credential; the old one is refused from now on" in server.log()
    identity = json.loads((state_dir / "identity.json").read_text())
    assert identity["agent_id"] == agent_id and identity["credential"] == new
    assert oct((state_dir / "identity.json").stat().st_mode & 0o777) == "0o600"
    assert not (state_dir / "identity.json.tmp").exists()


def test_a_crash_half_way_never_locks_the_agent_out(server: ServerProcess, tmp_path: Path) -> None:
    state_dir = tmp_path / "agent"
    agent_id = enroll_agent(server, state_dir)
    old = credential_of(state_dir)
    agent = Agent(server)
    try:
        assert not agent.report(old).rotate_credential
        rmm_json(server, "agents", "rotate", agent_id)
        assert agent.report(old).rotate_credential  # the acknowledgement asks

        # The server answers, the agent "crashes" before saving: the old one still works, and
        # the agent asks again; only the latest answer counts.
        lost = agent.rotate(old)
        assert agent.report(old).rotate_credential
        kept = agent.rotate(old)
        assert "not recognised" in agent.refused(lost)

        # Server restart between the answer and its first use: both still hold (persisted).
        server.stop()
        server.start()
        assert agent.report(old).rotate_credential
        assert not agent.report(kept).rotate_credential  # first use: the rotation is settled
        assert "not recognised" in agent.refused(old)
        server.stop()
        server.start()
        assert "not recognised" in agent.refused(old)
        assert not agent.report(kept).rotate_credential

        # An agent may rotate on its own (no request pending): same two-step hand-over.
        mine = agent.rotate(kept)
        agent.report(kept)
        agent.report(mine)
        assert "not recognised" in agent.refused(kept)
    finally:
        agent.close()
    shown: dict[str, Any] = rmm_json(server, "agents", "show", agent_id)
    assert shown["last_sequence"] == agent.sequence
