"""Operators with roles from the command line, every role boundary, and what the audit log
records of operator calls: against one real server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory

from rmm_common.tokens import bearer_metadata
from rmm_proto import commands_pb2, operator_pb2, operator_pb2_grpc
from rmm_server.roles import REQUIRED_ROLE, Role
from tests.helpers import ServerProcess, free_port, rmm, rmm_json

SERVICE = operator_pb2.DESCRIPTOR.services_by_name["OperatorService"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module: every test here leaves it usable for the next."""
    tmp = tmp_path_factory.mktemp("operators")
    process = ServerProcess(
        data_dir=tmp / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp / "server.log",
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tokens(server: ServerProcess) -> dict[Role, str]:
    """A token for an operator of each role, made with `rmm operators add`."""
    made = {}
    for role in Role:
        added = rmm_json(server, "operators", "add", f"as-{role.name.lower()}", "--role", role.name)
        assert added["role"] == role.name.lower() and added["state"] == "active"
        made[role] = added["token"]
    return made


def audit_entries(server: ServerProcess, *args: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = rmm_json(server, "audit", "list", "--limit", "5000", *args)
    return entries


def request_for(method: str) -> Any:
    """A request each call can take; it need not succeed, only get past the role check."""
    if method == "RunCommand":  # an action every role that may call RunCommand may send
        return operator_pb2.RunCommandRequest(
            target=operator_pb2.TargetSelector(agents=["no-such-agent"]),
            collect_now=commands_pb2.CollectNow(),
        )
    descriptor = SERVICE.methods_by_name[method].input_type
    return message_factory.GetMessageClass(descriptor)()


def call_status(server: ServerProcess, method: str, token: str) -> grpc.StatusCode:
    """Make one call as the operator with `token`; return its status code."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = operator_pb2_grpc.OperatorServiceStub(channel)
        metadata = bearer_metadata(token)
        try:
            if SERVICE.methods_by_name[method].server_streaming:
                for _ in getattr(stub, method)(request_for(method), metadata=metadata, timeout=20):
                    pass
            else:
                getattr(stub, method)(request_for(method), metadata=metadata, timeout=20)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
    return grpc.StatusCode.OK


def test_every_call_is_denied_just_below_its_role_and_open_at_it(
    server: ServerProcess, tokens: dict[Role, str]
) -> None:
    assert set(REQUIRED_ROLE) <= set(SERVICE.methods_by_name)
    for method, needed in REQUIRED_ROLE.items():
        below = [role for role in Role if role < needed]
        if below:
            code = call_status(server, method, tokens[max(below)])
            assert code == grpc.StatusCode.PERMISSION_DENIED, (method, max(below).name, code)
        code = call_status(server, method, tokens[needed])
        # Anything else is fine (NOT_FOUND, INVALID_ARGUMENT...): the call got past the guard.
        assert code != grpc.StatusCode.PERMISSION_DENIED, (method, needed.name, code)


def test_admin_calls_from_the_command_line_are_refused_below_admin(
    server: ServerProcess, tokens: dict[Role, str]
) -> None:
    tier3 = tokens[Role.TIER3]
    for args in (
        ("operators", "list"),
        ("operators", "add", "eve", "--role", "admin"),
        ("operators", "revoke", "as-viewer"),
    ):
        denied = rmm(server, *args, token=tier3, check=False)
        assert denied.returncode == 3, denied.stderr
        assert "has role tier3" in denied.stderr and "needs admin" in denied.stderr
    assert rmm(server, "audit", "verify", token=tier3).returncode == 0
    denied = rmm(server, "audit", "verify", token=tokens[Role.TIER2], check=False)
    assert denied.returncode == 3 and "VerifyAudit needs tier3" in denied.stderr


def test_an_added_operator_works_with_its_role_until_revoked(server: ServerProcess) -> None:
    added = rmm(server, "operators", "add", "bob", "--role", "tier1")
    token = added.stdout.strip()
    assert token.startswith("rmmo_") and "\n" not in token  # the token alone on stdout
    assert "not shown again" in added.stderr
    assert rmm(server, "agents", "list", token=token).returncode == 0
    denied = rmm(server, "tokens", "list", token=token, check=False)
    assert denied.returncode == 3
    assert "operator 'bob' has role tier1; ListEnrollmentTokens needs tier3" in denied.stderr

    listed = {o["name"]: o for o in rmm_json(server, "operators", "list")}
    assert listed["bob"]["role"] == "tier1" and listed["bob"]["created_by"] == "admin"
    assert "token" not in listed["bob"]

    again = rmm(server, "operators", "add", "Bob", "--role", "viewer", check=False)
    assert again.returncode == 1 and "'bob' exists already" in again.stderr
    bad_role = rmm(server, "operators", "add", "carol", "--role", "root", check=False)
    assert bad_role.returncode == 2 and "unknown role 'root'" in bad_role.stderr
    bad_name = rmm(server, "operators", "add", "policy:x", "--role", "viewer", check=False)
    assert bad_name.returncode == 2 and "not allowed" in bad_name.stderr

    revoked = rmm_json(server, "operators", "revoke", "bob")
    assert revoked["state"] == "revoked" and revoked["revoked_at"]
    # At once: the same token was accepted (and cached) a moment ago.
    cut_off = rmm(server, "agents", "list", token=token, check=False)
    assert cut_off.returncode == 3 and "operator 'bob' has been revoked" in cut_off.stderr
    assert "bob" not in {o["name"] for o in rmm_json(server, "operators", "list")}
    assert "bob" in {o["name"] for o in rmm_json(server, "operators", "list", "--all")}


def test_nobody_revokes_themselves(server: ServerProcess) -> None:
    own = rmm(server, "operators", "revoke", "admin", check=False)
    assert own.returncode == 2 and "cannot revoke itself" in own.stderr
    missing = rmm(server, "operators", "revoke", "nobody-here", check=False)
    assert missing.returncode == 4 and "no operator is called 'nobody-here'" in missing.stderr
    # A second admin may revoke the first; then it is the one that cannot go.
    second = rmm_json(server, "operators", "add", "admin2", "--role", "admin")["token"]
    assert rmm(server, "operators", "revoke", "as-admin", token=second).returncode == 0
    own = rmm(server, "operators", "revoke", "admin2", token=second, check=False)
    assert own.returncode == 2 and "cannot revoke itself" in own.stderr


def test_changes_are_audited_with_outcome_and_never_a_secret(
    server: ServerProcess, tokens: dict[Role, str]
) -> None:
    created = rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq")
    rmm(server, "agents", "list")  # read-only: not audited
    denied = rmm(
        server,
        "tokens",
        "create",
        "--client",
        "x",
        "--site",
        "y",
        token=tokens[Role.TIER1],
        check=False,
    )
    assert denied.returncode == 3
    missing = rmm(server, "alerts", "ack", "no-such-alert", "--comment", "mine", check=False)
    assert missing.returncode == 4
    added = rmm_json(server, "operators", "add", "dave", "--role", "viewer")
    # RunCommand writes its own entries, but one its role check refuses never reaches it.
    refused_run = call_status(server, "RunCommand", tokens[Role.VIEWER])
    assert refused_run == grpc.StatusCode.PERMISSION_DENIED

    raw = rmm(server, "audit", "list", "--limit", "5000", "--output", "json").stdout
    assert created["token"] not in raw and added["token"] not in raw
    entries = json.loads(raw)
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)  # newest last
    assert not [e for e in entries if e["action"].startswith(("List", "Get"))]

    create = [e for e in entries if e["action"] == "CreateEnrollmentToken" and e["outcome"] == "ok"]
    assert create[-1]["operator"] == "admin" and create[-1]["target"] == "acme/hq"
    assert create[-1]["details"] == {"client": "acme", "site": "hq", "result_id": created["id"]}

    refused = [e for e in entries if e["operator"] == "as-tier1"][-1]
    assert refused["action"] == "CreateEnrollmentToken" and refused["target"] == "x/y"
    assert refused["outcome"].startswith("denied: operator 'as-tier1' has role tier1")

    ack = [e for e in entries if e["action"] == "AckAlert" and e["operator"] == "admin"][-1]
    assert ack["target"] == "no-such-alert"
    assert ack["outcome"].startswith("error: NOT_FOUND: ")
    assert ack["details"] == {"id": "no-such-alert", "comment": "mine"}

    add = [e for e in entries if e["action"] == "AddOperator" and e["target"] == "dave"][-1]
    assert add["details"] == {"name": "dave", "role": "viewer", "result_id": added["id"]}

    run = [e for e in entries if e["action"] == "RunCommand" and e["operator"] == "as-viewer"]
    assert run[-1]["outcome"].startswith("denied: operator 'as-viewer' has role viewer")
    assert run[-1]["details"]["collect_now"] == {}

    mine = audit_entries(server, "--operator", "as-tier1")
    assert mine and {e["operator"] for e in mine} == {"as-tier1"}
    assert audit_entries(server, "--since", "1h")[-1]["seq"] == entries[-1]["seq"]
    assert audit_entries(server, "--since", "2099-01-01") == []
    last_two = audit_entries(server, "--limit", "2")
    assert [e["seq"] for e in last_two] == [e["seq"] for e in entries[-2:]]
    table = rmm(server, "audit", "list", "--operator", "as-tier1").stdout
    assert "CreateEnrollmentToken" in table and "denied" in table


def test_bulky_bytes_and_secret_fields_are_kept_out_of_details() -> None:
    from rmm_server.grpc_api.audit_calls import request_details, request_target  # noqa: PLC0415

    request = operator_pb2.RunCommandRequest(
        target=operator_pb2.TargetSelector(agents=["a1", "a2"]),
        push_file=commands_pb2.PushFile(path="/etc/motd", data=b"x" * 5000, mode=0o644),
    )
    details = request_details(request)
    assert details["push_file"]["data"] == {"bytes": 5000}
    assert details["push_file"]["path"] == "/etc/motd"
    assert details["target"] == {"agents": ["a1", "a2"]}
    listing = operator_pb2.ListAgentsRequest(page_token="secret-ish")
    assert request_details(listing) == {"page_token": "[redacted]"}
    assert request_target(operator_pb2.AckAlertRequest(id=" a1 ", comment="c")) == "a1"
    assert request_target(operator_pb2.ReloadPoliciesRequest()) == ""


def test_unauthenticated_calls_are_not_audited(server: ServerProcess, tmp_path: Path) -> None:
    before = audit_entries(server)[-1]["seq"]
    refused = rmm(
        server, "tokens", "create", "--client", "a", "--site", "b", token="rmmo_x_y", check=False
    )
    assert refused.returncode == 3
    assert audit_entries(server)[-1]["seq"] == before
