"""Nothing lost: real servers killed and stopped under real agents, which spool and redeliver.

Every check ends on the same proof: an agent stopped with SIGTERM has settled its counter
(runtime.json) and sent what it held, and the server holds sequences first..last with
`reports_stored == last - first + 1`, so every report made is stored exactly once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from rmm_agent.spool import SPOOL_FILE, Spool
from rmm_common.tokens import bearer_metadata
from rmm_proto import commands_pb2, operator_pb2, operator_pb2_grpc
from tests.helpers import (
    ServerProcess,
    enroll_with_token,
    free_port,
    rmm_json,
    start_agent,
    wait_for,
)

pytestmark = pytest.mark.timeout(600)
# A server starts in 2-5 s; on a 2-core machine shared with other test runs it can take 40 s.
START_TIMEOUT = 60.0

POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: e2e}
scope: {all: true}
rules:
  - name: MemoryInUse
    expr: memory_usage_ratio > 0.0
    severity: warning
    tier: L1
"""
# What a server must never log while agents redeliver: duplicates are expected and skipped.
STORAGE_TROUBLE = re.compile(r"IntegrityError|UNIQUE constraint|duplicate key|reports failed")


class Agent:
    """One real `rmm-agent run --interval 1` process and its state directory."""

    def __init__(self, base: Path, name: str, agent_id: str, config: str = "") -> None:
        self.state = base / name
        self.log = base / f"{name}.log"
        self.id = agent_id
        self.extra: list[str] = []
        if config:
            path = base / f"{name}.yaml"
            path.write_text(config)
            self.extra = ["--config", str(path)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        self.process = start_agent(self.state, self.log, 1.0, *self.extra)
        return self

    def sequence(self) -> int:
        """The agent's own count of the reports it made (runtime.json)."""
        path = self.state / "runtime.json"
        return int(json.loads(path.read_text())["sequence"]) if path.exists() else 0

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        # A stopping agent sends what it holds and settles its counter: slow on a loaded machine.
        # Past this the test fails; the agents_to_stop fixture kills what still runs.
        code = self.process.wait(60)
        self.process = None
        return code

    def text(self) -> str:
        return self.log.read_text(errors="replace")


# The servers the running test made; servers_end() kills those still running when it ends,
# whether it passed or failed half-way (each test stops its server itself when it passes).
_SERVERS: list[ServerProcess] = []


@pytest.fixture(autouse=True)
def servers_end() -> Iterator[None]:
    """End every server the test made, even when it failed before stopping one."""
    _SERVERS.clear()
    try:
        yield
    finally:
        for server in _SERVERS:
            server.kill()
        _SERVERS.clear()


def make_server(base: Path, *extra: str) -> ServerProcess:
    server = ServerProcess(
        base / "server", free_port(), free_port(), base / "server.log", extra_args=list(extra)
    )
    _SERVERS.append(server)
    return server


def enroll(server: ServerProcess, base: Path, count: int, config: str = "") -> list[Agent]:
    token = rmm_json(
        server, "tokens", "create", "--client", "acme", "--site", "hq", "--uses", str(count)
    )["token"]

    def one(index: int) -> Agent:
        state = base / f"agent{index}"
        result = enroll_with_token(server, state, token, "--insecure")
        assert result.returncode == 0, result.stderr
        agent_id = json.loads((state / "identity.json").read_text())["agent_id"]
        return Agent(base, f"agent{index}", str(agent_id), config)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def operator_stub(server: ServerProcess) -> operator_pb2_grpc.OperatorServiceStub:
    return operator_pb2_grpc.OperatorServiceStub(grpc.insecure_channel(server.grpc_address))


def last_sequences(server: ServerProcess) -> dict[str, int]:
    """Each agent's newest stored sequence (polled over gRPC: a CLI process a poll is slow)."""
    response = operator_stub(server).ListAgents(
        operator_pb2.ListAgentsRequest(limit=100),
        metadata=bearer_metadata(server.admin_token),
        timeout=10,
    )
    return {agent.id: agent.last_sequence for agent in response.agents}


def wait_caught_up(server: ServerProcess, agents: list[Agent], timeout: float) -> None:
    """Wait until the server holds every agent's reports up to the one it is making now."""

    def caught_up() -> bool:
        stored = last_sequences(server)
        return all(stored.get(a.id, 0) >= a.sequence() - 1 > 0 for a in agents)

    wait_for(caught_up, timeout, "every agent's reports to reach the server", every=0.5)


def assert_stored_exactly_once(server: ServerProcess, agent: Agent, first: int = 1) -> None:
    """The agent is stopped: the server holds each of its reports first..N once, no more. The
    numbers it skipped after a SIGKILL (its unused reservation) are the only gap."""
    made = agent.sequence()
    shown = rmm_json(server, "agents", "show", agent.id)
    assert (shown["first_sequence"], shown["last_sequence"]) == (first, made), (shown, made)
    assert shown["reports_stored"] == made - first + 1 - shown["skipped_sequences"], (shown, made)


def assert_no_storage_trouble(server: ServerProcess) -> None:
    trouble = [line for line in server.log().splitlines() if STORAGE_TROUBLE.search(line)]
    assert not trouble, trouble


@pytest.fixture
def agents_to_stop() -> Iterator[list[Agent]]:
    """Agents a test started; any still running at the end are killed."""
    started: list[Agent] = []
    try:
        yield started
    finally:
        for agent in started:
            if agent.process is not None and agent.process.poll() is None:
                agent.process.kill()
                agent.process.wait(30)


def queue_script(server: ServerProcess, agent_id: str, body: str) -> str:
    events = list(
        operator_stub(server).RunCommand(
            operator_pb2.RunCommandRequest(
                target=operator_pb2.TargetSelector(agents=[agent_id]),
                run_script=commands_pb2.RunScript(shell="bash", body=body),
                queue_offline=True,
            ),
            metadata=bearer_metadata(server.admin_token),
            timeout=60,
        )
    )
    assert events[-1].outcome.status == commands_pb2.COMMAND_QUEUED, events
    return str(events[0].started.targets[0].command_id)


def command_status(server: ServerProcess, command_id: str) -> int:
    info = operator_stub(server).GetCommand(
        operator_pb2.GetCommandRequest(id=command_id),
        metadata=bearer_metadata(server.admin_token),
        timeout=10,
    )
    return int(info.status)


def test_server_killed_for_20s_under_5_agents_loses_no_report_alert_silence_or_command(
    tmp_path: Path, agents_to_stop: list[Agent]
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "e2e.yaml").write_text(POLICY)
    server = make_server(tmp_path, "--policies", str(policies)).start(START_TIMEOUT)
    *reporting, offline = enroll(server, tmp_path, 6)
    for agent in reporting:
        agents_to_stop.append(agent.start())
    agents_to_stop.append(offline)

    def firing() -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = rmm_json(server, "alerts", "list", "--state", "firing")
        return alerts

    wait_for(lambda: len(firing()) == 5, 90, "an alert firing for each of the 5 agents")
    alert_ids = {a["id"] for a in firing()}
    silence = rmm_json(
        server, "alerts", "silence", "--match", "rule=Nothing", "--for", "1h", "--comment", "e2e"
    )
    marker = tmp_path / "ran.txt"
    command_id = queue_script(server, offline.id, f'echo ran >> "{marker}"')

    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    at_kill = {a.id: a.sequence() for a in reporting}
    time.sleep(20)  # the outage: 20 s at least, and ten reports from each agent meanwhile
    # (at one a second that is the same 20 s, unless a loaded machine slows the agents down).
    wait_for(
        lambda: all(a.sequence() - at_kill[a.id] >= 10 for a in reporting),
        90,
        "ten reports from each agent while the server is down",
        every=0.5,
    )
    made_while_down = {a.id: a.sequence() - at_kill[a.id] for a in reporting}
    server.start(START_TIMEOUT)

    # The agents reconnect on their own back-off: up to about 30 s after a 20 s outage.
    wait_caught_up(server, reporting, 180)
    assert alert_ids <= {a["id"] for a in firing()}, "an alert open before the kill is gone"
    assert silence["id"] in {s["id"] for s in rmm_json(server, "silences", "list")}
    agents_to_stop.append(offline.start())
    wait_for(
        lambda: command_status(server, command_id) == commands_pb2.COMMAND_SUCCEEDED,
        120,
        "the command queued before the kill to run",
    )
    assert marker.read_text() == "ran\n"

    for agent in [*reporting, offline]:
        assert agent.stop() == 0, agent.text()
    for agent in reporting:
        assert made_while_down[agent.id] >= 10, made_while_down  # the outage was real
        assert_stored_exactly_once(server, agent)
    assert_no_storage_trouble(server)
    assert server.stop() == 0


def test_server_sigterm_exits_in_time_and_keeps_every_report_it_acknowledged(
    tmp_path: Path, agents_to_stop: list[Agent]
) -> None:
    server = make_server(tmp_path, "--no-policies").start(START_TIMEOUT)
    agents = enroll(server, tmp_path, 3)
    for agent in agents:
        agents_to_stop.append(agent.start())
    wait_for(
        lambda: all(seq >= 3 for seq in last_sequences(server).values()),
        90,
        "three reports from each agent",
    )

    started = time.monotonic()
    assert server.stop(signal.SIGTERM, timeout=60) == 0, server.log()
    took = time.monotonic() - started
    # A stopping server ends the agents' streams itself rather than waiting out its 5 s grace
    # (ServerConfig.shutdown_grace_seconds), writes what is queued and exits: the agents are
    # told so (below). The margin beyond the grace is for a loaded machine, not for waiting.
    assert took < 5 + 20, f"SIGTERM took {took:.1f}s"
    assert "server stopped" in server.log()
    wait_for(
        lambda: all("the server is stopping" in agent.text() for agent in agents),
        60,
        "every agent to be told that the server stops",
    )

    acknowledged: dict[str, int] = {}
    for agent in agents:
        assert agent.stop() == 0, agent.text()
        spool = Spool(agent.state / SPOOL_FILE)
        try:
            acknowledged[agent.id] = spool.acked
            waiting = [r.sequence for r in spool.pending(0, 100_000)]
        finally:
            spool.close()
        # The agent holds everything after what the server acknowledged.
        assert waiting == list(range(spool.acked + 1, agent.sequence() + 1))

    server.start(START_TIMEOUT)
    for agent in agents:
        shown = rmm_json(server, "agents", "show", agent.id)
        assert shown["first_sequence"] == 1
        assert shown["last_sequence"] >= acknowledged[agent.id] > 0, shown
        assert shown["reports_stored"] == shown["last_sequence"], shown  # no gap

    # What the server stored but could not acknowledge comes again, and is stored once. A
    # report made after the restart proves the agent runs (a SIGTERM before its handler is set
    # would kill it) and that everything before it arrived.
    made = {agent.id: agent.sequence() for agent in agents}
    for agent in agents:
        agent.start()
    wait_for(
        lambda: all(last_sequences(server)[a.id] > made[a.id] for a in agents),
        120,
        "a report made after each agent's restart",
    )
    for agent in agents:
        assert agent.stop() == 0, agent.text()
        assert_stored_exactly_once(server, agent)
    assert_no_storage_trouble(server)
    assert server.stop() == 0


def test_an_agent_killed_with_unsent_reports_delivers_them_once_after_restart(
    tmp_path: Path, agents_to_stop: list[Agent]
) -> None:
    server = make_server(tmp_path, "--no-policies").start(START_TIMEOUT)
    (agent,) = enroll(server, tmp_path, 1)
    agents_to_stop.append(agent.start())
    wait_for(lambda: last_sequences(server)[agent.id] >= 2, 90, "two reports")
    assert server.stop() == 0
    before = agent.sequence()
    wait_for(lambda: agent.sequence() >= before + 4, 60, "four reports made while away")
    assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
    spooled = agent.sequence()

    server.start(START_TIMEOUT)
    agent.start()
    wait_for(lambda: last_sequences(server)[agent.id] > spooled, 120, "the spool and a new report")
    assert agent.stop() == 0
    waiting = re.findall(r"connected to \S+; (\d+) reports waiting", agent.text())
    assert waiting and int(waiting[-1]) >= 4, waiting
    assert_stored_exactly_once(server, agent)
    assert_no_storage_trouble(server)
    assert server.stop() == 0


def test_a_full_spool_drops_the_oldest_and_the_next_report_says_how_many(
    tmp_path: Path, agents_to_stop: list[Agent]
) -> None:
    server = make_server(tmp_path, "--no-policies").start(START_TIMEOUT)
    (agent,) = enroll(server, tmp_path, 1, config="spool_max_reports: 3\n")
    # The agent starts while the server is away, so the server has seen none of its reports.
    assert server.stop() == 0
    agents_to_stop.append(agent.start())
    wait_for(lambda: agent.sequence() >= 8, 90, "eight reports, five past the spool's bound")
    server.start(START_TIMEOUT)
    wait_caught_up(server, [agent], 120)
    # A report made now, with the spool no longer full, carries the final count.
    after = agent.sequence() + 1
    wait_for(lambda: last_sequences(server)[agent.id] >= after, 60, "a report after catching up")
    assert agent.stop() == 0
    assert "reached its bound" in agent.text()

    spool = Spool(agent.state / SPOOL_FILE)
    dropped = spool.dropped
    spool.close()
    assert dropped >= 5
    # The server holds the newest reports: everything after the ones the agent dropped.
    assert_stored_exactly_once(server, agent, first=dropped + 1)
    shown = rmm_json(server, "agents", "show", agent.id)
    assert shown["dropped_reports"] == dropped
    series = f'rmm_agent_reports_dropped_total{{client="acme",site="hq",agent="{agent.id}"}}'
    assert f"{series} {dropped}\n" in server.metrics()
    assert f" [{agent.id[:12]}] " in server.log() and f"{dropped} in all" in server.log()
    assert server.stop() == 0


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of `size` at `path` (a real file system that fills up), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for a real full disk needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file in `directory` until its file system has no byte left; return the file."""
    filler = directory / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with contextlib.suppress(OSError), filler.open("ab") as handle:
        while True:  # the last bytes, one at a time
            handle.write(b"\0")
            handle.flush()
    return filler


def stored_reports(server: ServerProcess, agent_id: str) -> dict[int, float]:
    """Sequence -> collected_at of every report the server stored for an agent (its SQLite)."""
    db = sqlite3.connect(f"file:{server.data_dir / 'rmm.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute(
            "SELECT sequence, collected_at FROM reports WHERE agent_id = ?", (agent_id,)
        ).fetchall()
    finally:
        db.close()
    return {int(seq): float(at) for seq, at in rows}


def test_a_full_state_disk_then_a_sigkill_reuses_no_sequence_and_every_report_is_accounted_for(
    tmp_path: Path, agents_to_stop: list[Agent]
) -> None:
    server = make_server(tmp_path, "--no-policies").start(START_TIMEOUT)
    try:
        full_disk_then_sigkill(tmp_path, server, agents_to_stop)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop(signal.SIGKILL)


def full_disk_then_sigkill(
    tmp_path: Path, server: ServerProcess, agents_to_stop: list[Agent]
) -> None:
    (agent,) = enroll(server, tmp_path, 1)
    enrolled = tmp_path / "enrolled"
    shutil.copytree(agent.state, enrolled)
    shutil.rmtree(agent.state)
    with small_tmpfs(agent.state, "4m"):
        try:
            for item in enrolled.iterdir():
                shutil.copy2(item, agent.state / item.name)
            agents_to_stop.append(agent.start())
            wait_for(lambda: last_sequences(server)[agent.id] >= 3, 90, "three reports")
            filler = fill(agent.state)
            # Reports go on while the disk is full (the spool keeps them in memory) and reach
            # the server; runtime.json's counter stays behind.
            at_full = last_sequences(server)[agent.id]
            wait_for(
                lambda: last_sequences(server)[agent.id] >= at_full + 5,
                60,
                "five reports stored while the agent's disk is full",
            )
            assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
            before_kill = stored_reports(server, agent.id)
            counter_at_kill = agent.sequence()
            assert counter_at_kill < max(before_kill), "the counter file kept up: not full?"

            # Still full at the restart: no number can be reserved, so no report is made.
            restarted_at = time.time()
            agent.start()
            wait_for(
                lambda: "cannot reserve report sequence numbers" in agent.text(),
                60,
                "the restarted agent to say it cannot reserve numbers",
            )
            filler.unlink()
            wait_for(
                lambda: last_sequences(server)[agent.id] > max(before_kill) + 3,
                90,
                "reports from the restarted agent once the disk has room",
            )
            assert agent.stop() == 0, agent.text()
        finally:
            if agent.process is not None and agent.process.poll() is None:
                agent.process.kill()
                agent.process.wait(10)
                agent.process = None
        last = agent.sequence()
        resumed = [int(n) for n in re.findall(r"sequence numbers resume at (\d+)", agent.text())]

    assert len(resumed) == 2, resumed  # the first start, and the one after the SIGKILL
    stored = stored_reports(server, agent.id)
    # Every report the restarted agent made is stored, none taken for an older one: numbers
    # resumed above everything the killed agent may have used, and the stored reports at those
    # numbers are the new ones.
    made_after = range(resumed[1], last + 1)
    assert resumed[1] > max(before_kill), (resumed, max(before_kill))
    assert all(seq in stored and stored[seq] >= restarted_at for seq in made_after), (
        resumed,
        last,
        sorted(stored),
    )
    # No number holds two reports: stored reports are in the order they were made.
    times = [stored[seq] for seq in sorted(stored)]
    assert times == sorted(times)
    # Every number is accounted for: stored, dropped by the agent, or skipped at its restart
    # (the skipped ones, from the counter on disk to the reservation, include the reports made
    # in memory while the disk was full: those the server stored are not missing).
    shown = rmm_json(server, "agents", "show", agent.id)
    assert shown["last_sequence"] == last, shown
    assert shown["skipped_sequences"] == resumed[1] - 1 - counter_at_kill, shown
    assert shown["conflicting_reports"] == shown["dropped_reports"] == 0, shown
    missing = set(range(shown["first_sequence"], last + 1)) - set(stored)
    assert missing <= set(range(counter_at_kill + 1, resumed[1])), sorted(missing)
    assert set(before_kill) <= set(stored)
    assert "rmm_server_reports_conflicting_total 0.0" in server.metrics()
    assert "refused report" not in agent.text()
    assert_no_storage_trouble(server)
    assert server.stop() == 0


def test_an_agent_whose_state_was_lost_is_refused_counted_and_resumes_above_the_server(
    tmp_path: Path, agents_to_stop: list[Agent]
) -> None:
    server = make_server(tmp_path, "--no-policies").start(START_TIMEOUT)
    try:
        (agent,) = enroll(server, tmp_path, 1)
        agents_to_stop.append(agent.start())
        wait_for(lambda: last_sequences(server)[agent.id] >= 6, 90, "six reports")
        assert agent.stop() == 0
        held = last_sequences(server)[agent.id]
        # The counters and the spool are lost (a restore of identity.json alone, say): the agent
        # starts again at 1, numbers the server holds with other reports.
        for name in ("runtime.json", "sequence.json", SPOOL_FILE):
            (agent.state / name).unlink(missing_ok=True)
        agent.start()
        wait_for(
            lambda: last_sequences(server)[agent.id] > held + 2,
            90,
            "reports stored above the ones the server held",
        )
        assert agent.stop() == 0
        shown = rmm_json(server, "agents", "show", agent.id)
        refused = shown["conflicting_reports"]
        # Refused and counted, not acknowledged as stored: only those sent before the first
        # refusal reached the agent, not one per number the server holds.
        assert 1 <= refused <= 3, shown
        assert f"rmm_server_reports_conflicting_total {float(refused)}" in server.metrics()
        assert f" [{agent.id[:12]}] " in server.log() and "sent report 1, but the server" in (
            server.log()
        )
        assert f"report numbers resume at {held + 1}" in agent.text()
        assert "the server refused report 1 for good" in agent.text()
        assert shown["last_sequence"] == agent.sequence()
        stored = stored_reports(server, agent.id)
        assert set(range(held + 1, agent.sequence() + 1)) <= set(stored)
        assert server.stop() == 0
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop(signal.SIGKILL)
