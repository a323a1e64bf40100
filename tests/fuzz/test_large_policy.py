"""A policy of 10,000 rules: a real server loads it and goes on serving a reporting agent.

The figures (load time, evaluation time per report) come from bench/policy_large.py; this test
only says the server stays usable: it starts, stores and evaluates reports, answers operators.
"""

from __future__ import annotations

from pathlib import Path

from bench.policy_large import rules_yaml
from tests.helpers import (
    ServerProcess,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)

RULES = 10_000


def test_a_server_with_ten_thousand_rules_serves_a_reporting_agent(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "large.yaml").write_text(rules_yaml(RULES), encoding="utf-8")
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--policies", str(policies)],
    ).start(timeout=120)
    agent = None
    try:
        agent_id = enroll_agent(server, tmp_path / "agent")
        agent = start_agent(tmp_path / "agent", tmp_path / "agent.log", 1.0)

        def sequence() -> int:
            return int(rmm_json(server, "agents", "show", agent_id)["last_sequence"])

        wait_for(lambda: sequence() >= 3, 60, "three reports evaluated against 10,000 rules")
        # Evaluated, not just stored: rules without `for:` fire on the first report.
        firing = rmm_json(server, "alerts", "list", "--limit", "1000")
        assert firing, "no alert from 10,000 rules"
        assert "rmm_policy_evaluation_seconds_count" in server.metrics()
        assert rmm(server, "agents", "list").returncode == 0
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(10)
        server.stop()
    assert "Traceback" not in server.log()
