"""Agent-supplied text cannot forge a server log line: a real server, an agent that names itself
with a newline, a fake log prefix and terminal escapes, its reports refused by its byte budget.
Every line of the server's log starts with the logger's prefix (or continues a record), and the
agent's id stands beside its name."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import grpc
import pytest

from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc
from tests.helpers import ServerProcess, free_port, rmm_json

FAKE = "2026-12-07 03:00:00,000 ERROR rmm_server.app: agent a1b2c3d4e5f6 revoked by admin"
# Refused at enrollment and in reports (C0/C1 control characters), but logged while refused.
WITH_NEWLINE = f"web-07\n{FAKE}\x1b[2J\x1b]0;owned\x07"
# Refused too since rmm_common.text (a line break to many readers and a bidi override), but
# logged while refused: the formatter must escape what no \x00-\x1f check sees.
WITH_SEPARATOR = f"web-07\u2028{FAKE}\u202e"
PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def host(hostname: str) -> agent_pb2.HostFacts:
    return agent_pb2.HostFacts(hostname=hostname, os=f"Linux\n{FAKE}\x1b[31m")


def report(sequence: int, hostname: str, blob: bytes = b"") -> agent_pb2.Report:
    made = agent_pb2.Report(
        sequence=sequence,
        collected_at=time.time(),
        interval_seconds=30,
        agent_version="0.1.0",
        host=agent_pb2.HostFacts(hostname=hostname, os="linux"),
    )
    collector = made.collectors.add(name="blob", ok=True)
    collector.samples.add(name="blob_size", value=len(blob))
    collector.info_json = blob
    return made


def test_agent_supplied_text_cannot_forge_a_server_log_line(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "server",
        free_port(),
        free_port(),
        tmp_path / "server.log",
        extra_args=["--agent-byte-budget", "1MiB/1h"],
    ).start()
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        token = rmm_json(server, "tokens", "create", "--client", "acme", "--site", "hq")["token"]
        with pytest.raises(grpc.RpcError) as refused:
            stub.Enroll(
                agent_pb2.EnrollRequest(token=token, host=host(WITH_NEWLINE), agent_version="1"),
                timeout=30,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as refused:
            stub.Enroll(
                agent_pb2.EnrollRequest(
                    token=token,
                    host=agent_pb2.HostFacts(hostname=WITH_SEPARATOR, os="linux"),
                    agent_version="1",
                ),
                timeout=30,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        enrolled = stub.Enroll(
            agent_pb2.EnrollRequest(
                token=token,
                host=agent_pb2.HostFacts(hostname=f"web-07 {FAKE}", os="linux"),
                agent_version="1",
            ),
            timeout=30,
        )
        agent_id, credential = enrolled.agent_id, enrolled.credential
        metadata = bearer_metadata(credential)
        # A report whose host facts hold control characters: refused, and logged.
        acks = list(
            stub.StreamReports(iter([report(1, WITH_NEWLINE)]), metadata=metadata, timeout=30)
        )
        assert acks and acks[0].rejected, acks
        # About 150 KB stored a report: over the 1 MiB budget by the seventh, logged once.
        reports = [
            report(n, f"web-07 {FAKE}", json.dumps({"blob": os.urandom(150_000).hex()}).encode())
            for n in range(1, 13)
        ]
        with pytest.raises(grpc.RpcError) as over:
            list(stub.StreamReports(iter(reports), metadata=metadata, timeout=60))
        assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        channel.close()
        server.stop()

    raw = server.log_path.read_text(encoding="utf-8")
    # Read as a reader that breaks lines at \u2028 and NEL too would.
    lines = [line for line in raw.splitlines() if line]
    # The one line `serve` prints itself, before logging starts, is the admin token's path.
    said = [line for line in lines if not line.startswith("admin operator token written to ")]
    forged = [line for line in said if not (PREFIX.match(line) or line.startswith("  | "))]
    assert not forged, forged
    assert not any(FAKE in line and not PREFIX.match(line) for line in lines)
    assert "\x1b" not in raw and "\u2028" not in raw and "\u202e" not in raw and "\x85" not in raw
    label = f" [{agent_id[:12]}]"
    (enroll_line,) = [line for line in lines if "enrolled agent " in line]
    assert enroll_line.endswith(f"{label} for acme/hq"), enroll_line
    assert f"web-07 {FAKE}{label}" in enroll_line
    (refusal,) = [line for line in lines if "refusing the reports of " in line]
    assert f"{label}: agent {agent_id} reached its storage budget" in refusal, refusal
    (invalid,) = [line for line in lines if "sent an invalid report" in line]
    assert "\\n" + FAKE in invalid and PREFIX.match(invalid)
    no_enroll, no_enroll_separator = [
        line for line in lines if "enrollment refused for host" in line
    ]
    assert "\\n" + FAKE in no_enroll and PREFIX.match(no_enroll)
    assert "web-07\\u2028" + FAKE + "\\u202e" in no_enroll_separator
    assert PREFIX.match(no_enroll_separator)
