"""The exposition is rendered from current state: series come and go with their agents."""

from __future__ import annotations

import logging
import time
from typing import Any

from rmm_proto import agent_pb2, common_pb2
from rmm_server.exporter import MetricsRenderer
from rmm_server.exposition import (
    DEFAULT_MAX_BYTES_PER_AGENT,
    DEFAULT_MAX_SERIES_PER_AGENT,
    ExportBudget,
    escape_label_value,
    format_value,
    render_agent_fragments,
)
from rmm_server.fleet import Fleet
from rmm_server.reports import MAX_LABEL_VALUE_CHARS, MAX_SAMPLES_PER_REPORT, validate_report
from rmm_server.server_metrics import ServerMetrics
from rmm_server.storage import AgentRecord


def record(agent_id: str, site: str = "hq") -> AgentRecord:
    return AgentRecord(
        id=agent_id,
        credential_hash="h",
        client='ac"me',
        site=site,
        enrolled_at=0,
        hostname=f"host-{agent_id}",
        interval_seconds=30,
    )


def report(sequence: int, used: float) -> agent_pb2.Report:
    result = agent_pb2.CollectorResult(name="disks", ok=True, duration_seconds=0.002)
    result.samples.append(
        common_pb2.Sample(name="disk_usage_ratio", value=used, labels={"mountpoint": "/"})
    )
    result.samples.append(
        common_pb2.Sample(name="disk_read_bytes_total", value=1e6, labels={"device": "sda"})
    )
    return agent_pb2.Report(
        sequence=sequence, collected_at=time.time(), interval_seconds=30, collectors=[result]
    )


def test_series_follow_the_fleet() -> None:
    fleet = Fleet()
    now = time.time()
    renderer = MetricsRenderer(fleet, ServerMetrics().registry, clock=lambda: now)
    fleet.add(record("a1"))
    fleet.add(record("a2", site="branch"))
    assert fleet.apply_report("a1", report(1, 0.5), now, {})
    assert fleet.apply_report("a2", report(1, 0.25), now - 3600, {})
    assert not fleet.apply_report("a2", report(1, 0.99), now, {}), "duplicates do not apply"

    text = renderer.render().decode()
    labels = 'client="ac\\"me",site="hq",agent="a1"'
    assert f'rmm_disk_usage_ratio{{{labels},mountpoint="/"}} 0.5\n' in text
    assert f"rmm_agent_up{{{labels}}} 1\n" in text
    assert 'rmm_agent_up{client="ac\\"me",site="branch",agent="a2"} 0\n' in text
    assert 'rmm_agents{client="ac\\"me",site="hq",status="online"} 1\n' in text
    assert text.count("# TYPE rmm_disk_usage_ratio gauge\n") == 1, "one header per family"
    assert "# TYPE rmm_disk_read_bytes_total counter\n" in text
    assert "rmm_agent_collector_success{" + labels + ',collector="disks"} 1' in text

    fleet.remove("a1")
    text = renderer.render().decode()
    assert 'agent="a1"' not in text
    assert 'agent="a2"' in text


def test_text_format_details() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(float("nan")) == "NaN"
    assert format_value(float("-inf")) == "-Inf"


def test_validated_samples_render_as_the_report_reads() -> None:
    """Ingest hands the exporter validate_report()'s samples; a stored report is read afresh:
    both give the same lines, labels sorted by name and escaped, a label set seen before too."""
    result = agent_pb2.CollectorResult(name="net", ok=True, duration_seconds=0.001)
    result.samples.append(
        common_pb2.Sample(
            name="network_receive_bytes_total",
            value=12.5,
            labels={"zone": 'a"b', "interface": "eth\\0\n"},
        )
    )
    result.samples.append(common_pb2.Sample(name="system_uptime_seconds", value=3.0))
    sent = agent_pb2.Report(
        sequence=1, collected_at=time.time(), interval_seconds=30, collectors=[result]
    )
    agent = record("a1")
    for _ in range(2):  # the second time from the cache of label sets
        fragments = render_agent_fragments(agent, sent, validate_report(sent))
        assert fragments == render_agent_fragments(agent, sent)
        labels = 'client="ac\\"me",site="hq",agent="a1"'
        assert fragments["rmm_network_receive_bytes_total"].decode() == (
            f'rmm_network_receive_bytes_total{{{labels},interface="eth\\\\0\\n",zone="a\\"b"}}'
            " 12.5\n"
        )
        assert fragments["rmm_system_uptime_seconds"].decode() == (
            f"rmm_system_uptime_seconds{{{labels}}} 3\n"
        )


def flood_report(samples: int, label_chars: int) -> agent_pb2.Report:
    """A report inside every per-field limit that would put megabytes on /metrics."""
    result = agent_pb2.CollectorResult(name="flood", ok=True)
    labels = {f"l{n}": "v" * label_chars for n in range(8)}
    for index in range(samples):
        result.samples.append(
            common_pb2.Sample(name="flood_ratio", value=index, labels={**labels, "l0": str(index)})
        )
    return agent_pb2.Report(
        sequence=1, collected_at=time.time(), interval_seconds=30, collectors=[result]
    )


def test_one_agent_cannot_inflate_metrics_past_its_budget(caplog: Any) -> None:
    """8 labels of 256 characters on 20,000 series were 15 MB per agent; with the default
    budget one agent's share is bounded, the cut is counted and logged once per agent."""
    metrics = ServerMetrics()
    fleet = Fleet(ExportBudget(counter=metrics.exporter_series_dropped))
    hog, honest = record("hog"), record("honest")
    fleet.add(hog)
    fleet.add(honest)
    flood = flood_report(MAX_SAMPLES_PER_REPORT, MAX_LABEL_VALUE_CHARS)
    series = validate_report(flood)
    with caplog.at_level(logging.WARNING, logger="rmm_server.exporter"):
        for sequence in (1, 2):
            flood.sequence = sequence
            assert fleet.apply_report("hog", flood, time.time(), {}, series)
        assert fleet.apply_report("honest", report(1, 0.5), time.time(), {})
    text = MetricsRenderer(fleet, metrics.registry).render().decode()
    hog_bytes = sum(len(line) + 1 for line in text.splitlines() if 'agent="hog"' in line)
    assert hog_bytes <= DEFAULT_MAX_BYTES_PER_AGENT + 4096, hog_bytes  # + its derived series
    kept = text.count("rmm_flood_ratio{")
    assert 0 < kept < DEFAULT_MAX_SERIES_PER_AGENT
    dropped = MAX_SAMPLES_PER_REPORT - kept
    assert (
        f'rmm_agent_exporter_series_dropped{{client="ac\\"me",site="hq",agent="hog"}} {dropped}\n'
        in text
    )
    assert f"rmm_exporter_series_dropped_total {2 * dropped}.0" in text  # two reports cut
    assert 'agent="honest",mountpoint="/"} 0.5' in text  # the other agent is whole
    assert (
        'rmm_agent_exporter_series_dropped{client="ac\\"me",site="hq",agent="honest"}' not in text
    )
    told = [r for r in caplog.records if "hog" in r.getMessage()]
    assert len(told) == 1 and f"{dropped} series of its reports are left out" in told[0].message


def test_series_budget_cuts_the_reports_tail_in_order() -> None:
    budget = ExportBudget(max_series=3, max_bytes=10**9)
    fragments = render_agent_fragments(record("a"), flood_report(5, 1), budget=budget)
    lines = fragments["rmm_flood_ratio"].decode().splitlines()
    assert [line.split('l0="')[1].split('"')[0] for line in lines] == ["0", "1", "2"]
    assert fragments["rmm_agent_exporter_series_dropped"].endswith(b" 2\n")
    assert budget.dropped_total == 2
    # A report that fits again shows no cut: the per-agent series goes with it.
    fitting = render_agent_fragments(record("a"), flood_report(3, 1), budget=budget)
    assert "rmm_agent_exporter_series_dropped" not in fitting
    assert budget.dropped_total == 2
