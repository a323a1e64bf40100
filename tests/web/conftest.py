"""A real server with a policy that fires at once, a real agent reporting every second, and an
operator of each role: shared by the dashboard's HTTP tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from rmm_server.roles import Role
from tests.helpers import (
    ServerProcess,
    end_all,
    enroll_agent,
    free_port,
    rmm_json,
    start_agent,
    wait_for,
)

POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: web}
scope: {all: true}
rules:
  - name: MemoryInUse
    expr: memory_usage_ratio > params.threshold
    params: {threshold: 0.0}
    severity: warning
    tier: L1
"""


@dataclass
class Fleet:
    server: ServerProcess
    agent_id: str
    tokens: dict[Role, str]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("web")
    policies = tmp / "policies"
    policies.mkdir()
    (policies / "web.yaml").write_text(POLICY)
    server = ServerProcess(
        data_dir=tmp / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp / "server.log",
        extra_args=["--policies", str(policies)],
    )
    agent = None
    try:
        server.start()
        agent_id = enroll_agent(server, tmp / "agent", "web-test")
        agent = start_agent(tmp / "agent", tmp / "agent.log", 1.0)
        tokens = {Role.ADMIN: server.admin_token}
        for role in (Role.VIEWER, Role.TIER1):
            added = rmm_json(
                server, "operators", "add", f"web-{role.name.lower()}", "--role", role.name
            )
            tokens[role] = added["token"]
        wait_for(
            lambda: rmm_json(server, "alerts", "list", "--state", "firing"),
            60,
            "the agent's first alert to fire",
        )
        yield Fleet(server, agent_id, tokens)
    finally:
        end_all(agent, server)
