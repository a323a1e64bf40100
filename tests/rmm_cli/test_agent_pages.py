"""`rmm agents list` over more agents than one page, against a real server: pages follow each
other without a gap or a repeat, --limit stops mid-page, and the streamed JSON is byte for byte
the JSON of the whole list (issue #16)."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from rmm_cli.agents import agent_pages, agent_row
from rmm_cli.client import Connection
from rmm_cli.output import emit_json, emit_json_rows
from rmm_proto import agent_pb2, agent_pb2_grpc, operator_pb2
from tests.helpers import ServerProcess, rmm, rmm_json

AGENTS = 23
PAGE = 5  # 23 agents: pages of 5, 5, 5, 5, 3


def enroll(server: ServerProcess, count: int) -> list[str]:
    """Enroll `count` agents host-00..., every third tagged web; return their hostnames."""
    token = rmm_json(
        server, "tokens", "create", "--client", "acme", "--site", "hq", "--uses", str(count)
    )["token"]
    names = []
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        for index in range(count):
            name = f"host-{index:02d}"
            stub.Enroll(
                agent_pb2.EnrollRequest(
                    token=token,
                    host=agent_pb2.HostFacts(hostname=name, os="linux"),
                    agent_version="1.0",
                    tags=["web"] if index % 3 == 0 else [],
                ),
                timeout=30,
            )
            names.append(name)
    return names


def test_pages_follow_each_other_to_the_last(server: ServerProcess, conn: Connection) -> None:
    names = enroll(server, AGENTS)
    everything = operator_pb2.AgentFilter()
    pages = list(agent_pages(conn, everything, 0, "", page_size=PAGE))
    assert [len(page.agents) for page in pages] == [5, 5, 5, 5, 3]
    assert [agent.hostname for page in pages for agent in page.agents] == names
    assert all(page.total == AGENTS for page in pages)
    assert pages[-1].next_page_token == ""

    # One call for everything gives the same rows.
    whole = list(agent_pages(conn, everything, 0, "", page_size=1000))
    assert len(whole) == 1
    assert [a for page in pages for a in page.agents] == list(whole[0].agents)

    # --limit stops inside a page, and says where the next one starts.
    limited = list(agent_pages(conn, everything, 12, "", page_size=PAGE))
    assert [len(page.agents) for page in limited] == [5, 5, 2]
    assert limited[-1].next_page_token != ""
    rest = list(agent_pages(conn, everything, 0, limited[-1].next_page_token, page_size=PAGE))
    assert [a.hostname for page in rest for a in page.agents] == names[12:]

    # A filter pages too: hosts 0, 3, ..., 21 are tagged web.
    web = list(agent_pages(conn, operator_pb2.AgentFilter(tag="web"), 0, "", page_size=3))
    assert [a.hostname for page in web for a in page.agents] == names[::3]
    assert [len(page.agents) for page in web] == [3, 3, 2]


def test_a_reader_that_stops_early_cancels_the_next_call(
    server: ServerProcess, conn: Connection
) -> None:
    enroll(server, 7)
    pages = agent_pages(conn, operator_pb2.AgentFilter(), 0, "", page_size=2)
    first = next(pages)
    assert len(first.agents) == 2
    pages.close()  # the call for page 2 was already made: closing must not raise or hang
    assert len(list(agent_pages(conn, operator_pb2.AgentFilter(), 0, "", page_size=2))) == 4


def test_streamed_json_is_the_json_of_the_whole_list(
    server: ServerProcess, conn: Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    enroll(server, AGENTS)
    now = time.time()
    pages = agent_pages(conn, operator_pb2.AgentFilter(), 0, "", page_size=PAGE)
    emit_json_rows([agent_row(agent, now) for agent in page.agents] for page in pages)
    streamed = capsys.readouterr().out
    rows = [
        agent_row(agent, now)
        for page in agent_pages(conn, operator_pb2.AgentFilter(), 0, "")
        for agent in page.agents
    ]
    emit_json(rows)
    assert streamed == capsys.readouterr().out
    assert len(json.loads(streamed)) == AGENTS

    # And the real command prints the same rows (its own clock for last_seen_seconds_ago).
    printed = json.loads(rmm(server, "agents", "list", "--output", "json").stdout)
    assert [row["id"] for row in printed] == [row["id"] for row in rows]
    emit_json_rows([])
    assert capsys.readouterr().out == "[]\n"
