"""Agents of two clients that choose their own hostnames, against every command that acts.

A real server, and real agents whose reported hostname is set by a wrapper around the real
`rmm-agent` (socket.gethostname is what every part of the agent reads): one is acme's web-01;
one of client "evil" names itself after the short id of acme's agent; another of "evil" calls
itself WEB-01. The operator's word must reach acme's agent or be refused with the candidates
listed, never reach an agent of "evil".
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    ServerProcess,
    free_port,
    rmm,
    rmm_json,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

# The real agent, with the hostname it reports taken from its first argument.
WRAPPER = (
    "import socket, sys; name = sys.argv.pop(1); socket.gethostname = lambda: name; "
    "from rmm_agent.cli import main; main()"
)
# A reboot here ends nothing: the agent answers it and goes on.
AGENT_CONFIG = 'reboot_command: ["true"]\n'
ACTING = "run, files push, files pull, services list, processes list, reboot"


@dataclass
class NamedAgent:
    id: str
    client: str
    hostname: str
    state: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class World:
    server: ServerProcess
    root: Path
    agents: dict[str, NamedAgent] = field(default_factory=dict)

    def enroll(self, key: str, client: str, hostname: str) -> NamedAgent:
        token = rmm_json(self.server, "tokens", "create", "--client", client, "--site", "hq")
        state = self.root / key
        result = subprocess.run(
            [sys.executable, "-c", WRAPPER, hostname, "enroll", "--server",
             self.server.grpc_address, "--token", token["token"], "--state-dir", str(state),
             "--insecure"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        agent_id = str(json.loads((state / "identity.json").read_text())["agent_id"])
        (state / "agent.yaml").write_text(AGENT_CONFIG)
        log = (state / "agent.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, hostname, "run", "--state-dir", str(state),
             "--interval", "300", "--config", str(state / "agent.yaml")],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        agent = NamedAgent(agent_id, client, hostname, state, process)
        self.agents[key] = agent
        return agent

    def stop(self) -> None:
        for agent in self.agents.values():
            if agent.process is not None and agent.process.poll() is None:
                agent.process.terminate()
                try:
                    agent.process.wait(15)
                except subprocess.TimeoutExpired:
                    agent.process.kill()
                    agent.process.wait(5)


def streams(server: ServerProcess) -> float:
    for line in server.metrics().splitlines():
        if line.startswith("rmm_server_command_streams "):
            return float(line.split()[1])
    return 0.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("names")
    server = ServerProcess(base / "data", free_port(), free_port(), base / "server.log")
    server.start()
    world = World(server, base)
    try:
        victim = world.enroll("victim", "acme", "web-01")
        world.enroll("spoof", "evil", victim.id[:12])
        world.enroll("clash", "evil", "WEB-01")
        wait_for(lambda: streams(server) >= 3, 60, "three agents' command streams")
        yield world
    finally:
        world.stop()
        server.stop()


def acting_commands(world: World, target: str) -> dict[str, list[str]]:
    """Return each acting command's `rmm` arguments (JSON output) for `target`."""
    local = world.root / "secret.conf"
    local.write_text("password=hunter2\n")
    remote = world.root / "pushed" / "secret.conf"
    remote.parent.mkdir(exist_ok=True)
    remote.unlink(missing_ok=True)
    return {
        "run": ["run", "-t", target, "--command", "echo ran"],
        "files push": ["files", "push", target, str(local), str(remote), "--overwrite"],
        "files pull": ["files", "pull", target, str(local), "--out", str(world.root / "got")],
        "services list": ["services", "list", target],
        "processes list": ["processes", "list", target],
        "reboot": ["reboot", target, "--yes", "--detach"],
    }


def agent_ids(output: Any) -> set[str]:
    """Return the agent ids an `rmm ... --output json` answer reached."""
    if isinstance(output, dict):  # --detach: the run and its targets
        return {target["agent_id"] for target in output["targets"]}
    return {outcome["agent_id"] for outcome in output}


def commands_of(world: World, agent_id: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = rmm_json(world.server, "commands", "list", "--agent", agent_id)
    return listed


def test_an_id_prefix_reaches_the_agent_with_that_id_never_one_named_after_it(
    world: World,
) -> None:
    victim, spoof = world.agents["victim"], world.agents["spoof"]
    for target in (victim.id[:12], victim.id[:12].upper(), f"agent={victim.id[:12]}"):
        for name, args in acting_commands(world, target).items():
            result = rmm(world.server, *args, "--output", "json", check=False)
            assert result.stdout, f"rmm {name} {target}: {result.stderr}"
            assert agent_ids(json.loads(result.stdout)) == {victim.id}, (name, result.stdout)
    assert commands_of(world, spoof.id) == []
    assert {c["action"] for c in commands_of(world, victim.id)} >= {
        "run_script", "push_file", "pull_file", "list_services", "list_processes", "reboot",
    }  # fmt: skip


def test_a_hostname_reported_in_two_clients_is_refused_with_the_candidates(
    world: World,
) -> None:
    victim, clash = world.agents["victim"], world.agents["clash"]
    for target in ("web-01", "host=web-01", "WEB-01"):
        for name, args in acting_commands(world, target).items():
            result = rmm(world.server, *args, check=False)
            assert result.returncode == 2, (name, result.stdout, result.stderr)
            message = result.stderr
            assert "agents of 2 clients" in message, (name, message)
            assert f"{victim.id} (client 'acme', site 'hq', agent-reported hostname 'web-01')" in (
                message
            )
            assert f"{clash.id} (client 'evil', site 'hq', agent-reported hostname 'WEB-01')" in (
                message
            )
    assert commands_of(world, clash.id) == []
    # Pinned to the client (it comes from the enrollment token, not from the agent): one agent.
    run = rmm_json(world.server, "run", "-t", "web-01,client=acme", "--command", "echo ran")
    assert agent_ids(run) == {victim.id}
    # What the agent reports of itself (os, tags) does not settle it.
    refused = rmm(world.server, "run", "-t", "web-01,os=linux", "--command", "true", check=False)
    assert refused.returncode == 2 and "agents of 2 clients" in refused.stderr


def test_a_hex_hostname_is_never_taken_for_an_id(world: World) -> None:
    spoof = world.agents["spoof"]
    # The spoof's hostname is a hex word: as a bare word it is the victim's id prefix (above);
    # only when the operator says host= is it a hostname, and then it is the spoof's.
    target = f"host={spoof.hostname},client=evil"
    run = rmm_json(world.server, "run", "-t", target, "--command", "echo ran")
    assert agent_ids(run) == {spoof.id}
    # Without its client, a hostname is refused while agents of several clients could claim it.
    unpinned = rmm(world.server, "run", "-t", f"host={spoof.hostname}", "--command", "true",
                   check=False)  # fmt: skip
    assert unpinned.returncode == 2 and "names no client" in unpinned.stderr
    assert spoof.id in unpinned.stderr


def test_lookups_of_one_agent_follow_the_same_rules(world: World) -> None:
    victim, spoof, clash = (world.agents[key] for key in ("victim", "spoof", "clash"))
    shown = rmm_json(world.server, "agents", "show", victim.id[:12])
    assert shown["id"] == victim.id
    for args in (
        ["agents", "show", "web-01"],
        ["agents", "rotate", "web-01"],
        ["agents", "revoke", "web-01", "--yes"],
        ["agents", "tag", "web-01", "--add", "x"],
        ["commands", "list", "--agent", "web-01"],
    ):
        result = rmm(world.server, *args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert victim.id in result.stderr and clash.id in result.stderr, (args, result.stderr)
    assert rmm_json(world.server, "agents", "show", f"host={spoof.hostname}")["id"] == spoof.id
    # Moving or tagging by hostname could let an agent into a client: ids only, with clients.
    moved = rmm(world.server, "agents", "move", f"host={spoof.hostname}", "--client", "acme",
                check=False)  # fmt: skip
    assert moved.returncode == 2 and "names no client" in moved.stderr
    assert rmm_json(world.server, "agents", "show", spoof.id)["client"] == "evil"
    # Listed beside its real id, the spoof's hostname is marked as what it is.
    shown = rmm(world.server, "agents", "show", spoof.id).stdout
    assert f"{spoof.hostname} (a hostname, not an id)" in shown
    agents = {a["id"]: a for a in rmm_json(world.server, "agents", "list")}
    assert agents[victim.id]["revoked_at"] is None and agents[clash.id]["revoked_at"] is None


def test_the_audit_names_the_resolved_agent_id_not_the_operators_word(world: World) -> None:
    victim, spoof = world.agents["victim"], world.agents["spoof"]
    rmm_json(world.server, "agents", "tag", victim.id[:12], "--add", "audited")
    rmm_json(world.server, "agents", "rotate", f"host={spoof.hostname}")
    by_victim = rmm_json(world.server, "audit", "list", "--agent", victim.id)
    tagged = [e for e in by_victim if e["action"] == "UpdateAgent"]
    assert tagged and tagged[-1]["target"] == victim.id, by_victim
    # The word the operator typed is kept in the details.
    assert tagged[-1]["details"]["agent"] == victim.id[:12]
    by_spoof = rmm_json(world.server, "audit", "list", "--agent", spoof.id)
    rotated = [e for e in by_spoof if e["action"] == "RotateAgentCredential"]
    assert rotated and rotated[-1]["target"] == spoof.id, by_spoof
    assert rotated[-1]["details"]["agent"] == f"host={spoof.hostname}"


def test_audit_list_finds_an_agents_entries_by_hostname_by_the_same_rules(world: World) -> None:
    victim, spoof, clash = (world.agents[key] for key in ("victim", "spoof", "clash"))
    rmm_json(world.server, "agents", "rotate", f"host={spoof.hostname}")
    # A hostname that names one agent finds that agent's entries (by its id, as they are kept).
    by_spoof = rmm_json(world.server, "audit", "list", "--agent", f"host={spoof.hostname}")
    assert by_spoof and {e["target"] for e in by_spoof} == {spoof.id}, by_spoof
    # acme's web-01 and evil's WEB-01 look alike: refused with both candidates, not a filter
    # that silently matches nothing (or the wrong client's agent).
    for word in ("web-01", "host=web-01"):
        refused = rmm(world.server, "audit", "list", "--agent", word, check=False)
        assert refused.returncode == 2 and "agents of 2 clients" in refused.stderr, refused.stderr
        assert victim.id in refused.stderr and clash.id in refused.stderr
    unknown = rmm(world.server, "audit", "list", "--agent", "host=no-such-host", check=False)
    assert unknown.returncode != 0 and "no-such-host" in unknown.stderr, unknown.stderr


def test_a_maintenance_window_keeps_the_id_its_agent_word_resolves_to(world: World) -> None:
    victim, spoof, clash = (world.agents[key] for key in ("victim", "spoof", "clash"))
    added = []
    try:
        window = rmm_json(world.server, "maintenance", "add", "--name", "by-prefix", "--start",
                          "now", "--duration", "1h", "--agent", victim.id[:12].upper(),
                          "--agent", f"host={spoof.hostname}")  # fmt: skip
        added.append(window["id"])
        assert window["agents"] == [victim.id, spoof.id]
        for word, needle in (("web-01", "agents of 2 clients"), ("ffff0000", "no agent id")):
            result = rmm(world.server, "maintenance", "add", "--name", "bad", "--start", "now",
                         "--duration", "1h", "--agent", word, check=False)  # fmt: skip
            assert result.returncode != 0 and needle in result.stderr, (word, result.stderr)
            if word == "web-01":
                assert victim.id in result.stderr and clash.id in result.stderr
        listed = rmm_json(world.server, "maintenance", "list")
        assert [w["name"] for w in listed] == ["by-prefix"]
    finally:
        for ident in added:
            rmm(world.server, "maintenance", "end", ident, check=False)


def test_a_silence_names_agents_by_id_or_by_hostname_within_a_client(world: World) -> None:
    victim = world.agents["victim"]
    made = []
    try:
        refused = rmm(world.server, "alerts", "silence", "--match", "hostname=web-01", "--for",
                      "1h", "--comment", "x", check=False)  # fmt: skip
        assert refused.returncode == 2 and "client=NAME" in refused.stderr, refused.stderr
        silence = ("alerts", "silence", "--for", "1h", "--comment", "x", "--match")
        pinned = rmm_json(world.server, *silence, "hostname=web-01,client=acme")
        made.append(pinned["id"])
        by_prefix = rmm_json(world.server, *silence, f"agent={victim.id[:12]},rule=X")
        made.append(by_prefix["id"])
        assert by_prefix["matchers"] == f"agent={victim.id},rule=X"
        unknown = rmm(world.server, "alerts", "silence", "--match", "agent=ffff0000", "--for",
                      "1h", "--comment", "x", check=False)  # fmt: skip
        assert unknown.returncode != 0 and "no agent id" in unknown.stderr, unknown.stderr
    finally:
        for ident in made:
            rmm(world.server, "silences", "expire", ident, check=False)


def test_alerts_of_one_agent_are_listed_by_the_same_rules(world: World) -> None:
    victim, clash = world.agents["victim"], world.agents["clash"]
    assert rmm_json(world.server, "alerts", "list", "--agent", victim.id[:12]) == []
    for word, needle in (("web-01", "agents of 2 clients"), ("ffff0000", "no agent id")):
        result = rmm(world.server, "alerts", "list", "--agent", word, check=False)
        assert result.returncode != 0 and needle in result.stderr, (word, result.stderr)
        if word == "web-01":
            assert victim.id in result.stderr and clash.id in result.stderr
