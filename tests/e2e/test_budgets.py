"""The per-agent byte budget covers command results end to end: a real server with a tiny budget,
real agents, `rmm run` of a script whose output does not fit the second time."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.helpers import (
    ServerProcess,
    end_all,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

# About 600 KB of output: one fits a 1 MiB budget, two do not.
PRINT_600KB = "head -c 600000 /dev/zero | tr '\\0' x"


def refused_results(server: ServerProcess, budget: str) -> float:
    found = re.search(
        rf'^rmm_server_command_results_refused_total{{budget="{budget}"}} (\S+)$',
        server.metrics(),
        re.M,
    )
    assert found, "rmm_server_command_results_refused_total is not exported"
    return float(found.group(1))


def connected(server: ServerProcess, count: int) -> bool:
    for line in server.metrics().splitlines():
        if line.startswith("rmm_server_command_streams "):
            return float(line.split()[1]) >= count
    return False


def test_a_command_result_over_the_agents_byte_budget_fails_the_command_and_spares_others(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        tmp_path / "server",
        free_port(),
        free_port(),
        tmp_path / "server.log",
        extra_args=["--agent-byte-budget", "1MiB/1h"],
    )
    hog = honest = None
    try:
        server.start()
        hog_id = enroll_agent(server, tmp_path / "hog", client="hog")
        honest_id = enroll_agent(server, tmp_path / "honest")
        config = tmp_path / "hog.yaml"
        config.write_text("script_output_limit: 1048576\n")
        hog = start_agent(tmp_path / "hog", tmp_path / "hog.log", 30.0, "--config", str(config))
        honest = start_agent(tmp_path / "honest", tmp_path / "honest.log", 1.0)
        wait_for(lambda: connected(server, 2), 60, "both agents' command streams")

        run = ("run", "-t", hog_id, "--command", PRINT_600KB, "--output", "json")
        first = rmm(server, *run, check=False)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr
        assert "x" * 1000 in first.stdout

        second = rmm(server, *run, check=False)
        assert second.returncode != 0, second.stdout + second.stderr
        (outcome,) = json.loads(second.stdout)
        assert outcome["status"] == "failed", outcome
        assert outcome["error"].startswith(
            "agent storage budget reached (--agent-byte-budget 1 MiB per hour; resets at "
        ), outcome
        assert "x" * 1000 not in second.stdout
        # The one-line summary names the agent and the budget, and when it resets.
        assert "1 of 1 agent failed" in second.stderr, second.stderr
        assert re.search(
            r"--agent-byte-budget 1 MiB per hour; resets at [-\d]+ [:\d]+ UTC", second.stderr
        )
        (stored,) = [
            command
            for command in rmm_json(server, "commands", "list", "--agent", hog_id)
            if "agent storage budget reached" in str(command.get("error", ""))
        ]
        assert stored["status"] == "failed", stored

        # Acknowledged: the agent does not resend it, so it is refused (and logged) once.
        time.sleep(3.0)
        assert refused_results(server, "agent_bytes") == 1.0
        assert refused_results(server, "free_space") == 0.0
        log = server.log_path.read_text()
        assert log.count("refusing the command results of ") == 1
        assert f" [{hog_id[:12]}]: agent storage budget" in log

        # The other agent keeps reporting and running commands, output and all.
        before = rmm_json(server, "agents", "show", honest_id)["last_sequence"]
        other = rmm(server, "run", "-t", honest_id, "--command", "echo still here", check=False)
        assert other.returncode == 0, other.stdout + other.stderr
        assert "still here" in other.stdout
        wait_for(
            lambda: rmm_json(server, "agents", "show", honest_id)["last_sequence"] > before + 1,
            30,
            "the honest agent's next reports",
        )
    finally:
        end_all(hog, honest, server)
