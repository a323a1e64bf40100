"""`rmm run`, `rmm files`, `rmm processes` against a real server and real agents on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import (
    ServerProcess,
    end_process,
    enroll_with_token,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)

# Agents report rarely here: the tests are about commands, and 20 agents share 2 cores.
REPORT_INTERVAL = "300"


@dataclass
class Fleet:
    """Enrolled agents of one test and the processes running them."""

    server: ServerProcess
    root: Path
    monkeypatch: pytest.MonkeyPatch
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def enroll(self, count: int, *tags: str) -> list[str]:
        """Enroll `count` agents with one token, in parallel; return their ids in order."""
        token = rmm_json(
            self.server, "tokens", "create", "--client", "acme", "--site", "hq",
            "--uses", str(count),
        )["token"]  # fmt: skip
        first = len(list(self.root.glob("agent-*")))
        dirs = [self.root / f"agent-{first + n:02}" for n in range(count)]
        tag_args = [arg for tag in tags for arg in ("--tag", tag)]

        def one(state_dir: Path) -> str:
            result = enroll_with_token(self.server, state_dir, token, "--insecure", *tag_args)
            assert result.returncode == 0, result.stderr
            return str(json.loads((state_dir / "identity.json").read_text())["agent_id"])

        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(one, dirs))

    def state_dir(self, agent_id: str) -> Path:
        for identity in self.root.glob("agent-*/identity.json"):
            if json.loads(identity.read_text())["agent_id"] == agent_id:
                return identity.parent
        raise AssertionError(f"no state directory for agent {agent_id}")

    def start(self, agent_id: str, env: dict[str, str] | None = None, config: str = "") -> None:
        """Start the agent; `env` reaches the scripts it runs, `config` is its YAML file."""
        state_dir = self.state_dir(agent_id)
        extra: list[str] = []
        if config:
            (state_dir / "agent.yaml").write_text(config)
            extra = ["--config", str(state_dir / "agent.yaml")]
        with self.monkeypatch.context() as patch:
            for name, value in (env or {}).items():
                patch.setenv(name, value)  # Popen copies the environment as it is now
            self.processes[agent_id] = start_agent(
                state_dir, state_dir / "agent.log", float(REPORT_INTERVAL), *extra
            )

    def stop(self, agent_id: str) -> None:
        end_process(self.processes[agent_id])  # killed, and failing, if it outlasts the wait
        del self.processes[agent_id]

    def wait_connected(self, count: int, timeout: float = 60.0) -> None:
        """Wait until `count` agents hold a command stream open to the server."""

        def streams() -> bool:
            match = re.search(r"^rmm_server_command_streams (\S+)$", self.server.metrics(), re.M)
            for agent_id, process in self.processes.items():
                assert process.poll() is None, f"agent {agent_id} exited {process.returncode}"
            return match is not None and float(match.group(1)) == count

        wait_for(streams, timeout, f"{count} agents' command streams")

    def close(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def fleet(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fleet]:
    agents = Fleet(server, tmp_path, monkeypatch)
    yield agents
    agents.close()


def test_a_script_runs_and_its_output_and_exit_code_are_shown(fleet: Fleet, tmp_path: Path) -> None:
    [agent] = fleet.enroll(1)
    fleet.start(agent)
    fleet.wait_connected(1)
    script = tmp_path / "greet.sh"
    script.write_text('echo "hello $1 from $GREETING"\necho "second line"\necho oops >&2\n')
    result = rmm(
        fleet.server, "run", "--target", agent, "--script", str(script),
        "--env", "GREETING=e2e", "--", "world",
    )  # fmt: skip
    assert result.stdout.count(agent[:12]) == 1
    assert "succeeded" in result.stdout and "hello world from e2e" in result.stdout
    assert result.stderr == ""

    failing = tmp_path / "fail.py"
    failing.write_text("import sys\nprint('checked 3 things')\nsys.exit('disk /var is full')\n")
    result = rmm(fleet.server, "run", "-t", agent, "--script", str(failing), check=False)
    assert result.returncode == 1
    row = next(line for line in result.stdout.splitlines() if agent[:12] in line)
    assert "failed" in row and " 1 " in row and "disk /var is full" in row
    # The agent-reported hostname, then the start of its id: the identity.
    expected = rf"rmm: 1 of 1 agent failed: \S+ \[{agent[:12]}\] \(exit 1\)$"
    assert re.search(expected, result.stderr.strip())

    [outcome] = json.loads(
        rmm(
            fleet.server, "run", "-t", agent, "--script", str(failing), "-o", "json", check=False
        ).stdout
    )
    assert outcome["status"] == "failed" and outcome["exit_code"] == 1
    assert outcome["stdout"] == "checked 3 things\n" and outcome["stderr"] == "disk /var is full\n"
    assert outcome["agent_id"] == agent and outcome["duration_seconds"] > 0

    # What the run left behind: the command and its whole result, by id.
    shown = rmm_json(fleet.server, "commands", "show", outcome["command_id"])
    assert shown["stderr"] == "disk /var is full\n" and shown["status"] == "failed"
    listed = rmm_json(fleet.server, "commands", "list", "--agent", agent, "--status", "failed")
    assert outcome["command_id"] in [c["command_id"] for c in listed]


def test_fan_out_to_20_agents_exits_non_zero_and_names_the_failing_one(
    fleet: Fleet, tmp_path: Path
) -> None:
    agents = fleet.enroll(20, "fanout")
    for index, agent in enumerate(agents):
        fleet.start(agent, env={"RMM_E2E_INDEX": str(index)})
    fleet.wait_connected(20, timeout=120)
    script = tmp_path / "check.sh"
    script.write_text(
        'if [ "$RMM_E2E_INDEX" = 7 ]; then echo "no space left on /var" >&2; exit 3; fi\n'
        'echo "agent $RMM_E2E_INDEX fine"\n'
    )
    result = rmm(
        fleet.server, "run", "-t", "tag=fanout", "--script", str(script), "--parallel", "10",
        check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    failing = agents[7]
    # Every agent here has the same hostname, so the summary adds the failing one's id.
    summary = result.stderr.strip()
    assert re.fullmatch(rf"rmm: 1 of 20 agents failed: \S+ \[{failing[:12]}\] \(exit 3\)", summary)
    rows = [line for line in result.stdout.splitlines() if "│" in line and "HOST" not in line]
    assert len(rows) == 20
    assert failing[:12] in rows[0] and "no space left on /var" in rows[0]  # failures first
    assert sum("succeeded" in row for row in rows) == 19

    outcomes = json.loads(
        rmm(
            fleet.server, "run", "-t", "tag=fanout", "--script", str(script), "-o", "json",
            check=False,
        ).stdout
    )  # fmt: skip
    by_agent = {o["agent_id"]: o for o in outcomes}
    assert set(by_agent) == set(agents)
    assert by_agent[failing]["exit_code"] == 3
    for index, agent in enumerate(agents):
        if agent != failing:
            assert by_agent[agent]["stdout"] == f"agent {index} fine\n"


def test_a_host_that_forbids_scripts_is_named_with_its_reason(fleet: Fleet) -> None:
    allowed, forbidding = fleet.enroll(2)
    fleet.start(allowed)
    fleet.start(forbidding, config="scripts: none\n")
    fleet.wait_connected(2)
    result = rmm(
        fleet.server, "run", "-t", f"{allowed},{forbidding}", "--command", "echo hi", check=False
    )
    assert result.returncode == 1
    assert f"[{forbidding[:12]}] (refused" in result.stderr
    assert "1 of 2 agents failed" in result.stderr


def test_files_push_then_pull_round_trip(fleet: Fleet, tmp_path: Path) -> None:
    first, second = fleet.enroll(2)
    fleet.start(first)
    fleet.start(second)
    fleet.wait_connected(2)
    local = tmp_path / "app.conf"
    payload = os.urandom(300_000) + b"\nend\n"
    local.write_bytes(payload)
    remote = tmp_path / "on-agent" / "app.conf"
    remote.parent.mkdir()
    result = rmm(fleet.server, "files", "push", first, str(local), str(remote), "--mode", "0600")
    assert "succeeded" in result.stdout
    assert remote.read_bytes() == payload and (remote.stat().st_mode & 0o777) == 0o600

    again = rmm(fleet.server, "files", "push", first, str(local), str(remote), check=False)
    assert again.returncode == 1 and "failed" in again.stdout  # exists, no --overwrite
    rmm(fleet.server, "files", "push", first, str(local), str(remote), "--overwrite")

    copy = tmp_path / "pulled.conf"
    [outcome] = rmm_json(fleet.server, "files", "pull", first, str(remote), "--out", str(copy))
    assert copy.read_bytes() == payload
    digest = hashlib.sha256(payload).hexdigest()
    assert outcome["result"]["file"] == {
        "path": str(remote),
        "size": len(payload),
        "sha256": digest,
    }
    assert outcome["local"].startswith(f"saved to {copy} (293.0 KiB, sha256 {digest[:12]})")

    # From two agents: one directory per agent (both have this host's name: the second gets
    # its id appended).
    out = tmp_path / "both"
    rmm(fleet.server, "files", "pull", f"{first},{second}", str(remote), "--out", str(out))
    pulled = sorted(out.glob("*/app.conf"))
    assert len(pulled) == 2 and all(p.read_bytes() == payload for p in pulled)

    missing = rmm(
        fleet.server, "files", "pull", first, str(tmp_path / "nope"), "--out", str(tmp_path / "x"),
        check=False,
    )  # fmt: skip
    assert missing.returncode == 1 and not (tmp_path / "x").exists()


def test_files_push_refuses_a_huge_file_before_sending(fleet: Fleet, tmp_path: Path) -> None:
    [agent] = fleet.enroll(1)  # never started: nothing may be sent anyway
    huge = tmp_path / "huge.img"
    with huge.open("wb") as handle:
        handle.truncate(1 << 30)
    result = rmm(fleet.server, "files", "push", agent, str(huge), "/tmp/huge.img", check=False)
    assert result.returncode == 2
    assert "is 1.0 GiB; rmm files push carries at most 8.0 MiB" in result.stderr
    assert rmm_json(fleet.server, "commands", "list") == []


def test_processes_list_finds_a_process(fleet: Fleet, tmp_path: Path) -> None:
    [agent] = fleet.enroll(1)
    fleet.start(agent)
    fleet.wait_connected(1)
    sleeper = tmp_path / "rmm-e2e-sleeper"  # 15 characters: the whole name fits in comm
    shutil.copy(shutil.which("sleep") or "/bin/sleep", sleeper)
    process = subprocess.Popen([str(sleeper), "300"])
    try:
        [outcome] = rmm_json(fleet.server, "processes", "list", agent, "--name", "rmm-e2e")
        found = outcome["result"]["processes"]["processes"]
        assert [(p["pid"], p["name"]) for p in found] == [(process.pid, "rmm-e2e-sleeper")]
        table = rmm(fleet.server, "processes", "list", agent, "--name", "rmm-e2e").stdout
        assert str(process.pid) in table and "rmm-e2e-sleeper" in table
        assert "==" not in table  # one agent: just its table
    finally:
        process.kill()
        process.wait()


def test_an_offline_agent_is_reported_offline_unless_queued(fleet: Fleet) -> None:
    online, offline = fleet.enroll(2)
    fleet.start(online)
    fleet.wait_connected(1)
    result = rmm(
        fleet.server, "run", "-t", f"{online},{offline}", "--command", "echo up", check=False
    )
    assert result.returncode == 1
    assert re.search(rf"1 of 2 agents failed: \S+ \[{offline[:12]}\] \(offline", result.stderr)
    row = next(line for line in result.stdout.splitlines() if offline[:12] in line)
    assert "offline" in row

    queued = rmm(
        fleet.server, "run", "-t", offline, "--command", "echo late", "--queue-offline",
        "-o", "json",
    )  # fmt: skip
    [outcome] = json.loads(queued.stdout)
    assert outcome["status"] == "queued" and outcome["ok"] is True
    fleet.start(offline)  # it connects, gets the queued command and runs it

    def finished() -> dict[str, object] | None:
        shown: dict[str, object] = rmm_json(fleet.server, "commands", "show", outcome["command_id"])
        return shown if shown["status"] == "succeeded" else None

    shown = wait_for(finished, 60, "the queued command to run once the agent connected")
    assert shown["stdout"] == "late\n"


def test_a_target_that_matches_nothing_exits_4(fleet: Fleet) -> None:
    result = rmm(fleet.server, "run", "-t", "tag=nonesuch", "--command", "true", check=False)
    assert result.returncode == 4 and result.stderr.startswith("rmm: ")
    bad = rmm(fleet.server, "run", "-t", "colour=red", "--command", "true", check=False)
    assert bad.returncode == 2 and "unknown key 'colour'" in bad.stderr
