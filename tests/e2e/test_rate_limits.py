"""Rate limits on a real server: a burst of enrollments from one address is refused after the
burst with a message naming the limit and when to retry; an operator who floods the server is
refused while other operators keep being served; refusals are counted on /metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc, operator_pb2, operator_pb2_grpc
from tests.helpers import (
    ServerProcess,
    enroll_with_token,
    free_port,
    rmm,
    rmm_json,
)


@contextmanager
def limited_server(tmp_path: Path, *args: str) -> Iterator[ServerProcess]:
    """A server started with rate options."""
    process = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=list(args),
    ).start()
    try:
        yield process
    finally:
        process.stop()


def refused_count(server: ServerProcess, limit: str) -> float:
    match = re.search(
        rf'^rmm_server_rate_limited_total{{limit="{limit}"}} (\S+)$', server.metrics(), re.M
    )
    return float(match.group(1)) if match else 0.0


def test_a_burst_of_enrollments_is_refused_after_the_burst(tmp_path: Path) -> None:
    with limited_server(tmp_path, "--enroll-rate", "6/min:4") as server:
        check_enrollment_burst(server, tmp_path)


def check_enrollment_burst(server: ServerProcess, tmp_path: Path) -> None:
    tokens = [
        rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq")["token"]
        for _ in range(6)
    ]
    channel = grpc.insecure_channel(server.grpc_address)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    outcomes: list[str] = []
    try:
        for token in tokens[:5]:  # one address, a different token each time
            request = agent_pb2.EnrollRequest(
                token=token, host=agent_pb2.HostFacts(hostname="burst"), agent_version="0.0.0"
            )
            try:
                stub.Enroll(request, timeout=10)
                outcomes.append("enrolled")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                outcomes.append(error.details() or "")
    finally:
        channel.close()
    assert outcomes[:4] == ["enrolled"] * 4
    assert outcomes[4].startswith(
        "too many enrollments from 127.0.0.1: this server allows 6/min:4 (bursts of 4) per "
        "source address; retry in "
    )
    assert outcomes[4].endswith(" s (server option --enroll-rate)")

    # The agent's own command says so and writes nothing.
    result = enroll_with_token(server, tmp_path / "agent", tokens[5], "--insecure")
    assert result.returncode != 0
    assert "RESOURCE_EXHAUSTED" in result.stderr and "too many enrollments from" in result.stderr
    assert not (tmp_path / "agent" / "identity.json").exists()

    # Operators are not held back by enrollments, and the refusals are counted.
    listed = rmm_json(server, "agents", "list")
    assert len(listed) == 4 and {agent["hostname"] for agent in listed} == {"burst"}
    assert refused_count(server, "enroll_address") == 2
    assert "enrollment refused for 127.0.0.1: too many enrollments" in server.log()


def test_a_flooding_operator_is_refused_while_others_are_served(tmp_path: Path) -> None:
    with limited_server(tmp_path, "--operator-rate", "2/min:10") as server:
        check_operator_flood(server)


def check_operator_flood(server: ServerProcess) -> None:
    flood = rmm_json(server, "operators", "add", "flood", "--role", "viewer")["token"]
    audit_before = len(rmm_json(server, "audit", "list", "--limit", "5000"))
    channel = grpc.insecure_channel(server.grpc_address)
    stub = operator_pb2_grpc.OperatorServiceStub(channel)
    answered, refused = 0, []
    started = time.monotonic()
    try:
        for _ in range(15):
            try:
                stub.ListAgents(
                    operator_pb2.ListAgentsRequest(), metadata=bearer_metadata(flood), timeout=10
                )
                answered += 1
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                refused.append(error.details() or "")
        # A mutating call refused by the limit is not written to the audit log either.
        with pytest.raises(grpc.RpcError) as caught:
            stub.AckAlert(
                operator_pb2.AckAlertRequest(id="x", comment="flood"),
                metadata=bearer_metadata(flood),
                timeout=10,
            )
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        channel.close()
    assert time.monotonic() - started < 30  # 2 a minute: no refill worth counting meanwhile
    assert answered == 10 and len(refused) == 5
    assert refused[0].startswith(
        "operator 'flood' made too many calls: this server allows 2/min:10 (bursts of 10) per "
        "operator; retry in "
    )

    # The command line says what happened, with a plain exit code 1.
    denied = rmm(server, "agents", "list", token=flood, check=False)
    assert denied.returncode == 1
    assert denied.stderr.startswith(
        f"rmm: rate limited by the server at {server.grpc_address}: operator 'flood' made too "
        "many calls"
    )
    # Another operator keeps being served.
    for _ in range(3):
        assert rmm_json(server, "agents", "list") == []
    assert refused_count(server, "operator") == 7
    audit_after = rmm_json(server, "audit", "list", "--limit", "5000")
    assert len(audit_after) == audit_before  # the refused AckAlert left no entry
