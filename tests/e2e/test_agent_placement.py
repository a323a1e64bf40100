"""Moving an agent to another client or site, and changing its tags, without enrolling again:
role-checked, audited, and seen at once in the fleet, /metrics and the alert policies' scope."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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

# Fires only for globex's agents tagged web: the scope a move and a retag must change.
POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: globex-web}
scope: {clients: [globex], tags: [web]}
rules:
  - name: GlobexWebCounted
    expr: cpu_logical_cores > 0.0
    severity: info
    tier: L1
"""


def cpu_labels(metrics: str, agent_id: str) -> list[tuple[str, str]]:
    pattern = rf'rmm_cpu_usage_ratio\{{client="([^"]*)",site="([^"]*)",agent="{agent_id}"\}}'
    return re.findall(pattern, metrics)


def test_move_and_retag_an_agent_without_enrolling_again(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "globex.yaml").write_text(POLICY)
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--policies", str(policies)],
    )
    server.start()
    agent = None
    try:
        state_dir = tmp_path / "agent"
        agent_id = enroll_agent(server, state_dir, "old", client="acme", site="hq")
        agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)
        wait_for(lambda: cpu_labels(server.metrics(), agent_id), 60, "the agent's series")
        assert cpu_labels(server.metrics(), agent_id) == [("acme", "hq")]

        # Below tier3: refused, and nothing moves.
        tier2 = rmm_json(server, "operators", "add", "desk-l2", "--role", "tier2")["token"]
        denied = rmm(server, "agents", "move", agent_id, "--client", "globex", token=tier2,
                     check=False)  # fmt: skip
        assert denied.returncode == 3, denied.stderr
        assert "UpdateAgent needs tier3" in denied.stderr, denied.stderr

        moved = rmm_json(server, "agents", "move", agent_id, "--client", "globex",
                         "--site", "branch")  # fmt: skip
        assert (moved["id"], moved["client"], moved["site"]) == (agent_id, "globex", "branch")
        # At once: the fleet and /metrics, with no report in between needed.
        assert cpu_labels(server.metrics(), agent_id) == [("globex", "branch")]
        [listed] = rmm_json(server, "agents", "list")
        assert (listed["client"], listed["site"]) == ("globex", "branch")

        # Not yet tagged web: the globex policy does not apply; after the retag it does.
        retagged = rmm_json(server, "agents", "tag", agent_id, "--add", "web", "--remove", "old")
        assert retagged["tags"] == ["web"]

        def fired() -> list[Any]:
            return [
                alert
                for alert in rmm_json(server, "alerts", "list", "--state", "firing")
                if alert["rule"] == "GlobexWebCounted" and alert["agent_id"] == agent_id
            ]

        [alert] = wait_for(fired, 60, "the new scope's rule to fire")
        assert alert["client"] == "globex" and alert["site"] == "branch"

        # Mistakes are named: a tag it does not have, nothing to change.
        typo = rmm(server, "agents", "tag", agent_id, "--remove", "wbe", check=False)
        assert typo.returncode == 2 and "no tag 'wbe'" in typo.stderr, typo.stderr
        same = rmm(server, "agents", "move", agent_id, "--client", "globex", check=False)
        assert same.returncode == 2 and "nothing to change" in same.stderr, same.stderr

        # Audited, with the agent id it resolved to.
        entries = [
            entry
            for entry in rmm_json(server, "audit", "list", "--limit", "50")
            if entry["action"] == "UpdateAgent"
        ]
        outcomes = sorted(entry["outcome"].split(":")[0] for entry in entries)
        assert outcomes.count("ok") == 2, entries
        assert any(entry["outcome"].startswith("denied") for entry in entries), entries

        # A restart reads the new placement back from the database.
        assert server.stop() == 0
        server.start()
        [listed] = rmm_json(server, "agents", "list")
        assert (listed["client"], listed["site"], listed["tags"]) == ("globex", "branch", ["web"])
    finally:
        try:
            end_process(agent)
        finally:
            server.stop()
