"""Wrong, expired, used-up and revoked tokens and bad credentials are refused, clearly."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest

from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc, operator_pb2, operator_pb2_grpc
from tests.helpers import (
    ServerProcess,
    agent_cmd,
    end_process,
    enroll_agent,
    enroll_with_token,
    rmm,
    rmm_json,
    start_agent,
)


def enroll(server: ServerProcess, state_dir: Path, token: str) -> tuple[int, str]:
    result = enroll_with_token(server, state_dir, token, "--insecure")
    return result.returncode, result.stdout + result.stderr


def test_wrong_token_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    real = rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq")["token"]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    code, text = enroll(server, tmp_path / "a", forged)
    assert code != 0 and "enrollment token not recognised" in text
    code, text = enroll(server, tmp_path / "b", "garbage")
    assert code != 0 and "not a valid enrollment secret" in text
    assert not (tmp_path / "a" / "identity.json").exists()


def test_used_up_token_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    token = rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq", "--uses", "1")[
        "token"
    ]
    assert enroll(server, tmp_path / "a", token)[0] == 0
    code, text = enroll(server, tmp_path / "b", token)
    assert code != 0 and "used up (1 of 1 uses)" in text


def test_expired_token_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    token = rmm_json(
        server, "tokens", "create", "--client", "acme", "--site", "hq", "--expires", "1s"
    )["token"]
    time.sleep(1.5)
    code, text = enroll(server, tmp_path / "a", token)
    assert code != 0 and "has expired" in text
    listed = rmm_json(server, "tokens", "list", "--all")
    assert [t["state"] for t in listed] == ["expired"]


def test_revoked_token_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    created = rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq")
    assert rmm_json(server, "tokens", "list")[0]["id"] == created["id"]
    revoked = rmm_json(server, "tokens", "revoke", created["id"])
    assert revoked["state"] == "revoked"
    assert rmm_json(server, "tokens", "list") == []  # only active ones by default
    code, text = enroll(server, tmp_path / "a", created["token"])
    assert code != 0 and "was revoked" in text
    missing = rmm(server, "tokens", "revoke", "doesnotexist", check=False)
    assert missing.returncode == 4 and "does not exist" in missing.stderr


def test_report_stream_without_valid_credential_is_refused(server: ServerProcess) -> None:
    channel = grpc.insecure_channel(server.grpc_address)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    report = agent_pb2.Report(sequence=1, collected_at=time.time())
    for metadata in ((), bearer_metadata("rmma_abc_def"), (("authorization", "Basic x"),)):
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.StreamReports(iter([report]), metadata=metadata, timeout=10))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    operators = operator_pb2_grpc.OperatorServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        operators.ListAgents(operator_pb2.ListAgentsRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
    denied = rmm(server, "agents", "list", token="rmmo_nope_nope", check=False)
    assert denied.returncode == 3 and "operator token not recognised" in denied.stderr


def test_agent_with_a_forged_credential_stops_with_a_clear_error(
    server: ServerProcess, tmp_path: Path
) -> None:
    state_dir = tmp_path / "agent"
    enroll_agent(server, state_dir)
    identity_path = state_dir / "identity.json"
    identity = json.loads(identity_path.read_text())
    identity["credential"] = identity["credential"][:-3] + "xyz"
    identity_path.write_text(json.dumps(identity))
    agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)
    try:
        code = agent.wait(60)
    finally:
        end_process(agent)  # when it did not stop on its own
    log = (tmp_path / "agent.log").read_text()
    assert code == 3, log
    assert "agent credential not recognised" in log


def test_agent_run_without_enrollment_says_how(tmp_path: Path) -> None:
    result = agent_cmd("run", "--state-dir", str(tmp_path / "empty"))
    assert result.returncode == 2
    assert "enroll first" in result.stderr
