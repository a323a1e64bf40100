"""What one agent can make the server store: a byte budget per agent, a free-space reserve."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from rmm_common.errors import ConfigError
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc
from rmm_server.budgets import (
    AgentByteBudget,
    BudgetExceeded,
    DiskReserveReached,
    FreeSpaceReserve,
    parse_budget,
    parse_size,
)
from tests.helpers import (
    ServerProcess,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)

MiB = 1024 * 1024


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_budget_counts_per_agent_and_resets_with_its_window() -> None:
    clock = Clock(7200.0 + 10)  # 10 s into a window aligned on the hour
    budget = AgentByteBudget(limit=1000, window_seconds=3600, clock=clock)
    budget.charge("a", 600)
    budget.charge("a", 400)
    with pytest.raises(BudgetExceeded) as refused:
        budget.charge("a", 1)
    text = str(refused.value)
    assert "agent a reached its storage budget: 1000 B stored of 1000 B per hour" in text
    assert "resets at 1970-01-01 03:00:00 UTC" in text and "--agent-byte-budget" in text
    assert refused.value.retry_after == pytest.approx(3590)
    assert refused.value.first
    with pytest.raises(BudgetExceeded) as again:
        budget.charge("a", 1)
    assert not again.value.first  # logged once per window
    budget.charge("b", 1000)  # another agent has its own budget
    assert budget.used("a") == 1000  # a refused report counts nothing
    clock.now += 3590
    budget.charge("a", 1000)  # a new window
    with pytest.raises(BudgetExceeded):
        budget.charge("c", 1001)  # one report over the whole budget never fits
    AgentByteBudget(limit=0).charge("a", 10**12)  # off


def test_budget_and_size_options_parse() -> None:
    assert parse_budget("64MiB/1h", "--b") == (64 * MiB, 3600)
    assert parse_budget("off", "--b")[0] == 0
    assert parse_size("1.5GB", "--m") == 1_500_000_000
    assert parse_size("0", "--m") == 0
    for bad in ("64MiB", "64MiB/", "lots/1h", "64MiB/0s"):
        with pytest.raises(ConfigError, match="--b"):
            parse_budget(bad, "--b")
    with pytest.raises(ConfigError, match="--m '12 parsecs' is not a size"):
        parse_size("12 parsecs", "--m")


def test_reserve_probes_the_real_filesystem_at_most_once_a_second(tmp_path: Path) -> None:
    """A real statvfs of a real filesystem, with the reserve set around what it has free."""
    calls: list[Path] = []

    def statvfs(path: Path) -> os.statvfs_result:
        calls.append(path)
        return os.statvfs(path)

    stat = os.statvfs(tmp_path)
    free = stat.f_bavail * stat.f_frsize
    clock = Clock(100.0)
    roomy = FreeSpaceReserve(tmp_path, free - 200 * MiB, clock=clock, statvfs=statvfs)
    roomy.charge(120 * MiB)
    # What was charged since the probe counts: a burst inside one second cannot run past the
    # reserve. (Margins of 80 MiB: other tests write to this filesystem meanwhile.)
    with pytest.raises(DiskReserveReached, match="down to its reserve"):
        roomy.charge(120 * MiB)
    for _ in range(100):
        roomy.charge(1)
    assert len(calls) == 1  # one syscall per second, not one per report
    clock.now += 1.0
    roomy.charge(120 * MiB)  # probed again: the charges were not written after all
    assert len(calls) == 2
    full = FreeSpaceReserve(tmp_path, free + 1024 * MiB, clock=clock)
    with pytest.raises(DiskReserveReached) as refused:
        full.charge(1)
    assert "kept free by --min-free-space" in str(refused.value)
    FreeSpaceReserve(tmp_path, 0, clock=clock).charge(10**15)  # off


def start_server(tmp_path: Path, data_dir: Path, *args: str) -> ServerProcess:
    return ServerProcess(
        data_dir=data_dir,
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=list(args),
    ).start()


def credential(state_dir: Path) -> str:
    return str(json.loads((state_dir / "identity.json").read_text())["credential"])


def report(sequence: int, info: bytes = b"") -> agent_pb2.Report:
    made = agent_pb2.Report(
        sequence=sequence,
        collected_at=time.time(),
        interval_seconds=30,
        agent_version="0.1.0",
        host=agent_pb2.HostFacts(hostname="hog", os="linux"),
    )
    collector = made.collectors.add(name="blob", ok=True)
    collector.samples.add(name="blob_size", value=len(info))
    collector.info_json = info
    return made


def refused_count(server: ServerProcess, budget: str) -> float:
    found = re.search(
        rf'^rmm_server_reports_refused_total{{budget="{budget}"}} (\S+)$', server.metrics(), re.M
    )
    assert found, "rmm_server_reports_refused_total is not exported"
    return float(found.group(1))


def test_an_agent_over_its_byte_budget_is_refused_while_another_keeps_reporting(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path, tmp_path / "server", "--agent-byte-budget", "1MiB/1h")
    honest_id = enroll_agent(server, tmp_path / "honest")
    hog_id = enroll_agent(server, tmp_path / "hog", client="hog")
    honest = start_agent(tmp_path / "honest", tmp_path / "honest.log", 1.0)
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        # Each report stores about 150 KB (random hex compresses to half): inside every
        # per-field limit, over the budget by the seventh.
        reports = [
            report(n, json.dumps({"blob": os.urandom(150_000).hex()}).encode())
            for n in range(1, 13)
        ]
        acks: list[agent_pb2.ReportAck] = []
        with pytest.raises(grpc.RpcError) as refused:
            for ack in stub.StreamReports(
                iter(reports), metadata=bearer_metadata(credential(tmp_path / "hog")), timeout=60
            ):
                acks.append(ack)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = refused.value.details() or ""
        assert f"agent {hog_id} reached its storage budget" in details, details
        assert "of 1 MiB per hour" in details and "the budget resets at " in details
        assert 4 <= len(acks) <= 7 and not any(ack.rejected for ack in acks)
        stored = acks[-1].sequence
        # Its next stream is refused too: the budget is per window, not per stream.
        with pytest.raises(grpc.RpcError) as again:
            list(
                stub.StreamReports(
                    iter([reports[len(acks)]]),
                    metadata=bearer_metadata(credential(tmp_path / "hog")),
                    timeout=30,
                )
            )
        assert again.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The other agent goes on reporting.
        before = rmm_json(server, "agents", "show", honest_id)["last_sequence"]
        wait_for(
            lambda: rmm_json(server, "agents", "show", honest_id)["last_sequence"] > before + 1,
            30,
            "the honest agent's next reports",
        )
        assert rmm_json(server, "agents", "show", hog_id)["last_sequence"] == stored
        assert refused_count(server, "agent_bytes") >= 2
        assert refused_count(server, "free_space") == 0
        log = server.log_path.read_text()
        assert log.count("refusing the reports of ") == 1  # once per window
        assert f" [{hog_id[:12]}]: " in log.split("refusing the reports of", 1)[1].split("\n", 1)[0]
        assert honest_id[:12] not in log.split("refusing the reports of", 1)[1].split("\n", 1)[0]
    finally:
        channel.close()
        honest.terminate()
        honest.wait(10)
        server.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs of its own, so that its free space is this test's alone."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root is needed): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def test_reports_are_refused_under_the_free_space_reserve_and_operators_still_write(
    tmp_path: Path, small_disk: Path
) -> None:
    server = start_server(tmp_path, small_disk / "server", "--min-free-space", "32MiB")
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        agent_id = enroll_agent(server, tmp_path / "agent")
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        metadata = bearer_metadata(credential(tmp_path / "agent"))
        (ack,) = stub.StreamReports(iter([report(1, b"{}")]), metadata=metadata, timeout=30)
        assert not ack.rejected
        # Fill the disk to 24 MiB free, under the 32 MiB reserve.
        stat = os.statvfs(small_disk)
        filler = small_disk / "filler"
        with filler.open("wb") as out:
            out.write(b"\0" * (stat.f_bavail * stat.f_frsize - 24 * MiB))
        time.sleep(1.2)  # the server probes at most once a second

        with pytest.raises(grpc.RpcError) as refused:
            list(stub.StreamReports(iter([report(2, b"{}")]), metadata=metadata, timeout=30))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "the server's disk is down to its reserve" in (refused.value.details() or "")
        assert refused_count(server, "free_space") == 1
        assert "under the reserve of 32 MiB (--min-free-space)" in server.log_path.read_text()
        # The reserve is there for everything else: an operator's write still succeeds.
        rmm(server, "tokens", "create", "--client", "acme", "--site", "hq")
        assert rmm_json(server, "agents", "show", agent_id)["last_sequence"] == 1

        filler.unlink()
        time.sleep(1.2)
        (ack,) = stub.StreamReports(iter([report(2, b"{}")]), metadata=metadata, timeout=30)
        assert not ack.rejected and ack.sequence == 2
        assert rmm_json(server, "agents", "show", agent_id)["last_sequence"] == 2
        assert "above the reserve again" in server.log_path.read_text()
    finally:
        channel.close()
        server.stop()
