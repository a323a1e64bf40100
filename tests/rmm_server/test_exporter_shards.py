"""The /metrics page from cached fragments: the same bytes as grouping every agent's fragments by
family, shards that together are the page, gzip members that decode to the plain page and follow
every change of the fleet."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import zlib
from collections import Counter, defaultdict
from shutil import which

import pytest
from prometheus_client import generate_latest

from rmm_proto import agent_pb2, common_pb2
from rmm_server.cluster import Export
from rmm_server.exporter import MetricsRenderer, Shard, family_metadata
from rmm_server.exposition import (
    ExportBudget,
    agent_label_prefix,
    escape_label_value,
    format_value,
)
from rmm_server.fleet import Fleet
from rmm_server.http_api import HttpApi
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import AgentRecord

NOW = 1_800_000_000.0


def grouped(renderer: MetricsRenderer) -> bytes:
    """The page as the exporter rendered it before it cached anything per scrape: every agent's
    fragments appended to its family in Python, families sorted, one join (the oracle)."""
    by_family: dict[str, list[bytes]] = defaultdict(list)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for state in renderer.fleet.snapshot():
        record = state.record
        scope = 2 if renderer.export_of is None else int(renderer.export_of(record.id))
        if not scope:
            continue
        online = record.online(NOW)
        counts[(record.client, record.site, "online" if online else "offline")] += 1
        prefix = agent_label_prefix(record)
        by_family["rmm_agent_up"].append(f"rmm_agent_up{{{prefix}}} {int(online)}\n".encode())
        if record.last_seen is not None:
            by_family["rmm_agent_last_report_timestamp_seconds"].append(
                f"rmm_agent_last_report_timestamp_seconds{{{prefix}}} "
                f"{format_value(record.last_seen)}\n".encode()
            )
        if scope < 2:
            continue
        for family, text in state.fragments.items():
            by_family[family].append(text)
    for (client, site, status), count in counts.items():
        labels = (
            f'client="{escape_label_value(client)}",site="{escape_label_value(site)}",'
            f'status="{status}"'
        )
        by_family["rmm_agents"].append(f"rmm_agents{{{labels}}} {count}\n".encode())
    parts = []
    for family in sorted(by_family):
        kind, help_text = family_metadata(family)
        parts.append(f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n".encode())
        parts.extend(by_family[family])
    return b"".join(parts) + generate_latest(renderer.registry)


def record(index: int, client: str = "acme") -> AgentRecord:
    return AgentRecord(
        id=f"agent-{index:04d}",
        credential_hash="h",
        client=client,
        site=f"site-{index % 3}",
        enrolled_at=0,
        hostname=f"höst-{index}",  # non-ASCII: lines are UTF-8
        interval_seconds=30,
        os="linux",
    )


def report(sequence: int, used: float, disks: int = 2, extra: bool = False) -> agent_pb2.Report:
    cpu = agent_pb2.CollectorResult(name="cpu", ok=True, duration_seconds=0.001)
    cpu.samples.append(common_pb2.Sample(name="cpu_usage_ratio", value=used / 2))
    disk = agent_pb2.CollectorResult(name="disks", ok=True, duration_seconds=0.002)
    for n in range(disks):
        disk.samples.append(
            common_pb2.Sample(name="disk_usage_ratio", value=used, labels={"mountpoint": f"/d{n}"})
        )
    collectors = [cpu, disk]
    if extra:  # a series only some agents send
        made = agent_pb2.CollectorResult(name="made", ok=False, duration_seconds=0.5)
        made.samples.append(common_pb2.Sample(name="made_up_total", value=3, labels={"k": 'a"b'}))
        collectors.append(made)
    return agent_pb2.Report(
        sequence=sequence, collected_at=NOW, interval_seconds=30, collectors=collectors
    )


def fleet_of(agents: int) -> Fleet:
    """A fleet of varied agents: some offline, some with series others lack, one over its
    budget, one never reported, two clients."""
    fleet = Fleet(ExportBudget(max_series=4))
    for index in range(agents):
        fleet.add(record(index, client="acme" if index % 4 else 'glo"bex'))
        if index % 11 == 10:
            continue  # enrolled, never reported
        seen = NOW - (200 if index % 5 == 0 else 1)
        sent = report(1, index / 100, disks=6 if index == 7 else 2, extra=index % 3 == 0)
        assert fleet.apply_report(f"agent-{index:04d}", sent, seen, {})
    return fleet


def samples(page: bytes) -> list[str]:
    return [line for line in page.decode().splitlines() if not line.startswith("#")]


def members(body: bytes) -> list[bytes]:
    """Split a gzip stream into its members (each decoded on its own)."""
    found = []
    while body:
        member = zlib.decompressobj(31)
        found.append(member.decompress(body))
        assert member.eof, "a member is cut short"
        body = member.unused_data
    return found


def test_page_is_every_agents_fragments_grouped_by_family_byte_for_byte() -> None:
    metrics = ServerMetrics()
    fleet = fleet_of(60)
    renderer = MetricsRenderer(fleet, metrics.registry, clock=lambda: NOW)
    page = renderer.render()
    assert page == grouped(renderer)
    assert page.count(b"# TYPE rmm_disk_usage_ratio gauge\n") == 1
    assert 'hostname="höst-3"'.encode() in page
    assert b"rmm_agent_exporter_series_dropped{" in page  # agent 7: over its budget
    # Again, from the cached per-agent lines: the same bytes.
    assert renderer.render() == page

    # With replicas: agents another replica shows are left out, and those whose reports went to
    # another replica show up and last-report only.
    def export_of(agent_id: str) -> Export:
        return Export(int(agent_id[-1]) % 3)

    shared = MetricsRenderer(fleet, metrics.registry, clock=lambda: NOW, export_of=export_of)
    assert shared.render() == grouped(shared)
    assert gzip.decompress(shared.render_gzip()) == shared.render()


def test_shards_together_hold_each_line_of_the_page_once() -> None:
    fleet = fleet_of(50)
    renderer = MetricsRenderer(fleet, ServerMetrics().registry, clock=lambda: NOW)
    page = renderer.render()
    for count in (1, 2, 3, 7):
        union: Counter[str] = Counter()
        for index in range(count):
            shard = Shard(index, count)
            text = renderer.render(shard)
            union.update(samples(text))
            assert gzip.decompress(renderer.render_gzip(shard)) == text
            fleet_wide = b"\nrmm_agents{" in text and b"rmm_server_reports_received_total" in text
            assert fleet_wide == (index == 0), f"fleet-wide series in shard {index} of {count}"
            agents = {line.split('agent="')[1][:10] for line in samples(text) if "agent=" in line}
            assert all(shard.holds(agent) for agent in agents)
        assert union == Counter(samples(page)), f"{count} shards"
    assert Shard(0, 1).holds("anything")
    for index in range(3):
        assert renderer.render(Shard(index, 3)).count(b"# TYPE rmm_agent_up gauge\n") == 1


def test_gzip_is_a_stream_of_members_that_decodes_to_the_page() -> None:
    fleet = fleet_of(40)
    renderer = MetricsRenderer(fleet, ServerMetrics().registry, clock=lambda: NOW)
    renderer.gzip_block_agents = 8  # several blocks per family at 40 agents
    body = renderer.render_gzip()
    parts = members(body)
    assert len(parts) > 40, "one member per family and block of agents"
    assert b"".join(parts) == gzip.decompress(body) == renderer.render()
    # A shard with no agent at all is an empty page, still gzip.
    empty = MetricsRenderer(Fleet(), ServerMetrics().registry)
    assert gzip.decompress(empty.render_gzip(Shard(1, 2))) == empty.render(Shard(1, 2)) == b""
    renderer.close()


def test_a_changed_value_is_in_the_next_scrape_and_only_its_blocks_are_compressed_again() -> None:
    fleet = fleet_of(40)
    renderer = MetricsRenderer(fleet, ServerMetrics().registry, clock=lambda: NOW)
    renderer.gzip_block_agents = 8
    before = members(renderer.render_gzip())
    compressed_before = set(zlib_members(renderer.render_gzip()))
    assert fleet.apply_report("agent-0001", report(2, 0.987), NOW, {})
    plain = renderer.render()
    assert b'agent="agent-0001",mountpoint="/d0"} 0.987\n' in plain
    assert b'agent="agent-0001",mountpoint="/d0"} 0.01\n' not in plain
    body = renderer.render_gzip()
    assert gzip.decompress(body) == plain == grouped(renderer)
    after = zlib_members(body)
    new = [member for member in after if member not in compressed_before]
    # The agent's blocks of the families whose lines changed (cpu, disk, last report,
    # collector durations do not: the report repeats them), and the server's own metrics.
    assert 0 < len(new) <= 6, len(new)
    assert len(after) == len(before)


def zlib_members(body: bytes) -> list[bytes]:
    """Split a gzip stream into its members, compressed."""
    found = []
    while body:
        member = zlib.decompressobj(31)
        member.decompress(body)
        found.append(body[: len(body) - len(member.unused_data)])
        body = member.unused_data
    return found


def test_compressed_members_are_kept_for_the_page_and_one_shard_count() -> None:
    renderer = MetricsRenderer(fleet_of(20), ServerMetrics().registry, clock=lambda: NOW)
    renderer.render_gzip()
    for count in (2, 3, 5):
        for index in range(count):
            renderer.render_gzip(Shard(index, count))
    kept = set(renderer._members)
    assert kept == {None, Shard(0, 5), Shard(1, 5), Shard(2, 5), Shard(3, 5), Shard(4, 5)}


def test_a_removed_or_revoked_agent_leaves_page_shards_and_gzip() -> None:
    fleet = fleet_of(30)
    renderer = MetricsRenderer(fleet, ServerMetrics().registry, clock=lambda: NOW)
    for shard in (None, Shard(0, 2), Shard(1, 2)):
        renderer.render_gzip(shard)
    fleet.remove("agent-0002")
    fleet.revoke("agent-0003", NOW)
    for shard in (None, Shard(0, 2), Shard(1, 2)):
        plain = renderer.render(shard)
        unzipped = gzip.decompress(renderer.render_gzip(shard))
        assert unzipped == plain
        for gone in (b'agent="agent-0002"', b'agent="agent-0003"'):
            assert gone not in plain
    assert renderer.render() == grouped(renderer)
    # An agent moved to another client: its lines carry the new labels at once.
    fleet.place("agent-0004", "initech", "hq", [], report(2, 0.5))
    page = renderer.render()
    assert b'client="initech",site="hq",agent="agent-0004"' in page
    assert b'site="site-1",agent="agent-0004"' not in page
    assert gzip.decompress(renderer.render_gzip()) == page == grouped(renderer)


def promtool_check(text: bytes) -> None:
    promtool = which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing (Debian package prometheus)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_passes_the_page_and_every_shard() -> None:
    fleet = fleet_of(30)
    renderer = MetricsRenderer(fleet, ServerMetrics().registry, clock=lambda: NOW)
    promtool_check(renderer.render())
    for index in range(3):
        promtool_check(renderer.render(Shard(index, 3)))


def test_shard_parameters_are_checked_with_the_fix() -> None:
    assert Shard.parse(None, None) is None
    assert Shard.parse("2", "4") == Shard(2, 4)
    for shard, of, words in [
        ("1", None, "shard= and of= together"),
        ("x", "4", "whole numbers"),
        ("4", "4", "shard=4 must be from 0 to 3"),
        ("0", "0", "of=0 must be from 1"),
    ]:
        with pytest.raises(ValueError, match=words):
            Shard.parse(shard, of)


def test_http_serves_shards_plain_and_gzip() -> None:
    fleet = fleet_of(20)
    renderer = MetricsRenderer(fleet, ServerMetrics().registry, clock=lambda: NOW)

    async def get(port: int, path: str, *headers: str) -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            extra = "".join(f"{header}\r\n" for header in headers)
            request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"
            writer.write(request.encode())
            response = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        return head, body

    async def scenario() -> None:
        api = HttpApi("127.0.0.1", 0, renderer, lambda: (True, "ok\n"), max_connections=8)
        plain_only = HttpApi(
            "127.0.0.1", 0, renderer.render, lambda: (True, "ok\n"), max_connections=8
        )
        await api.start()
        await plain_only.start()
        try:
            head, body = await get(api.port, "/metrics?shard=1&of=3")
            assert head.startswith(b"HTTP/1.1 200") and body == renderer.render(Shard(1, 3))
            head, body = await get(api.port, "/metrics?shard=1&of=3", "Accept-Encoding: gzip")
            assert b"Content-Encoding: gzip" in head
            assert gzip.decompress(body) == renderer.render(Shard(1, 3))
            head, body = await get(api.port, "/metrics", "Accept-Encoding: gzip")
            assert gzip.decompress(body) == renderer.render() and len(members(body)) > 1
            head, body = await get(api.port, "/metrics?shard=3&of=3")
            assert head.startswith(b"HTTP/1.1 400") and b"shard=3 must be from 0 to 2" in body
            head, body = await get(plain_only.port, "/metrics?shard=0&of=2")
            assert head.startswith(b"HTTP/1.1 400") and b"not sharded" in body
            head, body = await get(plain_only.port, "/metrics", "Accept-Encoding: gzip")
            assert gzip.decompress(body) == renderer.render()
        finally:
            await api.stop()
            await plain_only.stop()
            renderer.close()

    asyncio.run(scenario())


def test_the_clock_moves_agents_offline_without_a_report() -> None:
    fleet = fleet_of(12)
    now = [NOW]
    renderer = MetricsRenderer(fleet, ServerMetrics().registry, clock=lambda: now[0])
    assert b'rmm_agent_up{client="acme",site="site-1",agent="agent-0001"} 1\n' in renderer.render()
    renderer.render_gzip()
    now[0] = NOW + 3600
    page = renderer.render()
    assert b'rmm_agent_up{client="acme",site="site-1",agent="agent-0001"} 0\n' in page
    assert b'status="online"' not in page
    assert gzip.decompress(renderer.render_gzip()) == page
