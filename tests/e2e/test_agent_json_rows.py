"""`rmm agents list --output json` as rows the server renders (ListAgents json_rows) against the
rows the CLI renders from messages, on a real server with real agents, on SQLite and PostgreSQL:
byte for byte the same JSON, before and after every change a row shows (a report, a move, a
retag, a revocation, going offline), page by page, with filters (issue #16)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from rmm_cli.agents import agent_pages, agent_row, page_json
from rmm_cli.client import Connection
from rmm_cli.output import emit_json_rows, emit_json_texts
from rmm_proto import agent_pb2, agent_pb2_grpc, operator_pb2
from tests import databases
from tests.helpers import (
    ServerProcess,
    end_process,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)

# Hostnames an agent may report (the server refuses control characters): the server's text
# must escape them as the CLI's encoder does.
ODD_HOSTNAMES = [
    "plain",
    'quo"te\\slash',
    "ünï-çødé-日本",
    "[red]markup[/]",
    "x" * 200,
    "\U0001d518",
]
PAGE = 3
# The reporting agent's interval: online for 3 of them after its last report, long enough for
# the comparisons to read it online on both ways even on a loaded machine.
INTERVAL = 5


@pytest.fixture(params=databases.DIALECTS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    extra = ["--db", request.getfixturevalue("pg_url")] if request.param == "postgresql" else []
    process = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=extra,
    ).start()
    yield process
    process.stop()


def enroll_odd_hosts(server: ServerProcess) -> None:
    """Enroll agents that never report, with hostnames that need escaping and some tags."""
    token = rmm_json(
        server, "tokens", "create", "--client", "beta", "--site", "hq", "--uses", "10"
    )["token"]
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        for index, name in enumerate(ODD_HOSTNAMES):
            stub.Enroll(
                agent_pb2.EnrollRequest(
                    token=token,
                    host=agent_pb2.HostFacts(hostname=name, os="linux", os_name="Debian"),
                    agent_version="1.0",
                    tags=["web", "db"] if index % 2 else [],
                ),
                timeout=30,
            )


def both_ways(
    conn: Connection,
    capsys: pytest.CaptureFixture[str],
    flt: operator_pb2.AgentFilter,
    limit: int = 0,
    page_size: int = PAGE,
) -> tuple[str, str]:
    """Return the list's JSON as the server renders it and as the CLI renders the messages,
    both for the same `now`."""
    now = time.time()
    emit_json_texts(
        page_json(page, now) for page in agent_pages(conn, flt, limit, "", page_size, now)
    )
    rendered = capsys.readouterr().out
    emit_json_rows(
        [agent_row(agent, now) for agent in page.agents]
        for page in agent_pages(conn, flt, limit, "", page_size)
    )
    return rendered, capsys.readouterr().out


def assert_same(conn: Connection, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The two ways agree for every filter; return the whole list."""
    for flt, limit, page_size in (
        (operator_pb2.AgentFilter(), 0, PAGE),
        (operator_pb2.AgentFilter(), 0, 1000),
        (operator_pb2.AgentFilter(), 4, PAGE),
        (operator_pb2.AgentFilter(tag="web"), 0, PAGE),
        (operator_pb2.AgentFilter(client="acme"), 0, PAGE),
        (operator_pb2.AgentFilter(status="online"), 0, PAGE),
        (operator_pb2.AgentFilter(status="offline"), 0, PAGE),
        (operator_pb2.AgentFilter(client="nobody"), 0, PAGE),
    ):
        rendered, decoded = both_ways(conn, capsys, flt, limit, page_size)
        assert rendered == decoded, (flt, limit, page_size)
    rendered, _ = both_ways(conn, capsys, operator_pb2.AgentFilter())
    rows: list[dict[str, Any]] = json.loads(rendered)
    return rows


def test_server_rendered_rows_are_the_cli_rows(
    server: ServerProcess,
    conn: Connection,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    enroll_odd_hosts(server)
    reporting = enroll_agent(server, tmp_path / "a1", "web")
    other = enroll_agent(server, tmp_path / "a2", "db", site="branch")
    agent = start_agent(tmp_path / "a1", tmp_path / "a1.log", interval=INTERVAL)
    try:

        def reported(count: int) -> bool:
            rows = rmm_json(server, "agents", "list")
            return any(r["id"] == reporting and r["last_sequence"] >= count for r in rows)

        wait_for(lambda: reported(2), 60, "the agent's reports")
    finally:
        assert end_process(agent) == 0, (tmp_path / "a1.log").read_text()
    rows = assert_same(conn, capsys)
    assert len(rows) == len(ODD_HOSTNAMES) + 2
    row = next(r for r in rows if r["id"] == reporting)
    assert row["status"] == "online" and isinstance(row["cpu_usage_ratio"], float)
    assert {r["hostname"] for r in rows} >= set(ODD_HOSTNAMES)

    # Every change a row shows is seen, though the rows were rendered (and kept) above.
    rmm(server, "agents", "move", other, "--client", "beta", "--site", "hq")
    rmm(server, "agents", "tag", other, "--add", "moved", "--remove", "db")
    revoked = rmm_json(server, "agents", "list", "--tag", "db")[0]["id"]
    rmm(server, "agents", "revoke", revoked, "--yes")
    rows = assert_same(conn, capsys)
    moved = next(r for r in rows if r["id"] == other)
    assert (moved["client"], moved["site"], moved["tags"]) == ("beta", "hq", ["moved"])
    assert sum(r["status"] == "revoked" for r in rows) == 1

    # Another report (sequence, metrics, last_seen), then offline as time passes (3 intervals).
    before = row["last_sequence"]
    assert isinstance(before, int)
    agent = start_agent(tmp_path / "a1", tmp_path / "a1.log", interval=INTERVAL)
    try:
        wait_for(lambda: reported(before + 1), 60, "another report")
    finally:
        assert end_process(agent) == 0, (tmp_path / "a1.log").read_text()
    rows = assert_same(conn, capsys)
    assert next(r for r in rows if r["id"] == reporting)["last_sequence"] > before
    time.sleep(3 * INTERVAL + 1)
    rows = assert_same(conn, capsys)
    assert next(r for r in rows if r["id"] == reporting)["status"] == "offline"

    # The real command prints the server's text: the same rows (its own clock for
    # last_seen_seconds_ago), and a list no agent matches is [].
    printed = json.loads(rmm(server, "agents", "list", "--output", "json").stdout)
    assert [{**r, "last_seen_seconds_ago": None} for r in printed] == [
        {**r, "last_seen_seconds_ago": None} for r in rows
    ]
    assert rmm(server, "agents", "list", "-o", "json", "--client", "nobody").stdout == "[]\n"


def test_a_server_without_json_rows_is_printed_from_its_messages(
    server: ServerProcess, conn: Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    """An older server ignores json_rows and answers with messages: page_json renders them
    as the newer server would have."""
    enroll_odd_hosts(server)
    now = time.time()
    pages = list(agent_pages(conn, operator_pb2.AgentFilter(), 0, "", PAGE))
    assert all(page.agents and not page.json_rows for page in pages)
    emit_json_texts(page_json(page, now) for page in pages)
    from_messages = capsys.readouterr().out
    emit_json_texts(
        page_json(page, now)
        for page in agent_pages(conn, operator_pb2.AgentFilter(), 0, "", PAGE, now)
    )
    assert from_messages == capsys.readouterr().out
    assert len(json.loads(from_messages)) == len(ODD_HOSTNAMES)
