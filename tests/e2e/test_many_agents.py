"""`rmm agents list` over more agents than a screen or a page: a table shows the first page and
says how to see the next, a page token continues where it stopped, JSON has every agent, and
past a few hundred rows a table is plain text (fast) with the same columns."""

from __future__ import annotations

import grpc

from rmm_cli.agents import PLAIN_TABLE_ROWS, TABLE_PAGE
from rmm_proto import agent_pb2, agent_pb2_grpc
from tests.helpers import ServerProcess, rmm, rmm_json

AGENTS = PLAIN_TABLE_ROWS + 20


def enroll_many(server: ServerProcess, count: int) -> list[str]:
    """Enroll `count` agents named host-00000... through the Enroll RPC; return their ids."""
    token = rmm_json(
        server, "tokens", "create", "--client", "acme", "--site", "hq", "--uses", str(count)
    )["token"]
    ids = []
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        for index in range(count):
            response = stub.Enroll(
                agent_pb2.EnrollRequest(
                    token=token,
                    host=agent_pb2.HostFacts(hostname=f"host-{index:05d}", os="linux"),
                    agent_version="1.0",
                ),
                timeout=30,
            )
            ids.append(response.agent_id)
    return ids


def hosts_in(table: str) -> list[str]:
    return [
        word for line in table.splitlines() for word in line.split() if word.startswith("host-")
    ]


def test_a_large_fleet_is_listed_page_by_page(server: ServerProcess) -> None:
    ids = enroll_many(server, AGENTS)
    names = [f"host-{index:05d}" for index in range(AGENTS)]

    first = rmm(server, "agents", "list")
    assert hosts_in(first.stdout) == names[:TABLE_PAGE]
    assert f"{TABLE_PAGE:,} of {AGENTS:,} agents" in first.stderr
    assert f"--page-token {TABLE_PAGE} " in first.stderr

    last = rmm(server, "agents", "list", "--page-token", str(AGENTS - 7))
    assert hosts_in(last.stdout) == names[-7:]
    assert "--page-token" not in last.stderr, "nothing follows the last page"

    listed = rmm_json(server, "agents", "list")
    assert [row["hostname"] for row in listed] == names
    assert sorted(row["id"] for row in listed) == sorted(ids)
    assert len(rmm_json(server, "agents", "list", "--limit", "3")) == 3

    everything = rmm(server, "agents", "list", "--limit", "0").stdout.splitlines()
    assert everything[0].split()[:3] == ["ID", "HOSTNAME", "CLIENT"]
    assert hosts_in("\n".join(everything)) == names
    header, row = everything[0], everything[1]
    # Never reported: offline, no metrics; empty tags and OS leave their columns blank.
    assert row.split() == [ids[0][:12], names[0], "acme", "hq", "offline", "-", "-", "-", "-", "-"]
    assert row.index("acme") == header.index("CLIENT"), "columns line up"
    assert row.index("offline") == header.index("STATUS")

    nothing = rmm(server, "agents", "list", "--limit", "0", "--client", "nobody")
    assert "no agents match" in nothing.stderr
