"""Every field of a report is checked: one rule a test, each refusal naming the field."""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from shutil import which

import grpc
import pytest
from prometheus_client import CollectorRegistry

from rmm_common.errors import InvalidArgument
from rmm_common.metric_catalog import catalog
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc
from rmm_server.exporter import DERIVED_FAMILIES, MetricsRenderer
from rmm_server.fleet import Fleet
from rmm_server.reports import (
    HOST_FIELD_MAX_CHARS,
    MAX_COLLECTORS,
    MAX_LABEL_VALUE_CHARS,
    MAX_LABELS_PER_SAMPLE,
    MAX_SAMPLES_PER_REPORT,
    MAX_SEQUENCE,
    RESERVED_LABELS,
    inventory_hash,
    validate_report,
)
from rmm_server.storage import AgentRecord, schema
from tests.helpers import ServerProcess, enroll_agent, rmm_json, start_agent, wait_for

Edit = Callable[[agent_pb2.Report], object]


def good_report() -> agent_pb2.Report:
    report = agent_pb2.Report(
        sequence=7,
        collected_at=time.time(),
        interval_seconds=30,
        agent_version="0.1.0",
        host=agent_pb2.HostFacts(
            hostname="web01", os="linux", os_name="Debian", os_version="12", arch="x86_64"
        ),
    )
    cpu = report.collectors.add(name="cpu", ok=True, duration_seconds=0.001)
    cpu.samples.add(name="cpu_usage_ratio", value=0.25)
    cpu.samples.add(name="cpu_core_usage_ratio", labels={"core": "0"}, value=0.5)
    cpu.samples.add(name="cpu_core_usage_ratio", labels={"core": "1"}, value=math.nan)
    disks = report.collectors.add(name="disks", ok=True)
    disks.samples.add(name="disk_free_bytes", labels={"mountpoint": "/"}, value=math.inf)
    disks.samples.add(name="disk_free_bytes", labels={"mountpoint": 'C:\\ "x"\n'}, value=-math.inf)
    return report


def refused(edit: Edit) -> str:
    report = good_report()
    edit(report)
    with pytest.raises(InvalidArgument) as caught:
        validate_report(report)
    return str(caught.value)


def add_sample(name: str, labels: dict[str, str] | None = None) -> Edit:
    def edit(report: agent_pb2.Report) -> None:
        report.collectors[0].samples.add(name=name, labels=labels or {}, value=1)

    return edit


def test_a_good_report_passes_with_nan_and_infinities() -> None:
    validate_report(good_report())


def test_sequence_fits_the_database() -> None:
    assert "sequence 0 is invalid" in refused(lambda r: setattr(r, "sequence", 0))
    text = refused(lambda r: setattr(r, "sequence", 2**63))
    assert text.startswith("report 9223372036854775808: sequence is over 4611686018427387903")
    report = good_report()
    report.sequence = MAX_SEQUENCE
    validate_report(report)


@pytest.mark.parametrize("sequence", [2**62, 2**63 - 2, 2**63 - 1])
def test_sequences_that_leave_no_room_are_refused(sequence: int) -> None:
    """2^63 - 1 fits the column but would make every later report a "duplicate"; refused
    with the bound and the fix named."""
    text = refused(lambda r: setattr(r, "sequence", sequence))
    assert "sequence is over 4611686018427387903 (2^62 - 1)" in text
    assert "re-enroll the agent" in text


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_collected_at_is_a_time(value: float) -> None:
    assert "collected_at" in refused(lambda r: setattr(r, "collected_at", value))


def test_interval_is_bounded() -> None:
    assert "interval_seconds 86401 is over 86400" in refused(
        lambda r: setattr(r, "interval_seconds", 86_401)
    )


def test_agent_version_and_hashes_fit_their_columns() -> None:
    assert "agent_version is 65 characters long; at most 64" in refused(
        lambda r: setattr(r, "agent_version", "1" * 65)
    )
    assert "inventory_hash is 65 characters long" in refused(
        lambda r: setattr(r, "inventory_hash", "a" * 65)
    )


@pytest.mark.parametrize("name", sorted(HOST_FIELD_MAX_CHARS))
def test_host_facts_fit_their_columns(name: str) -> None:
    limit = HOST_FIELD_MAX_CHARS[name]
    assert limit == schema.agents.c[name].type.length  # type: ignore[attr-defined]
    report = good_report()
    setattr(report.host, name, "x" * limit)
    validate_report(report)
    text = refused(lambda r: setattr(r.host, name, "x" * (limit + 1)))
    assert f"host.{name} is {limit + 1} characters long; at most {limit}" in text


def test_host_facts_hold_no_control_characters() -> None:
    text = refused(lambda r: setattr(r.host, "hostname", "web01\x1b[2J"))
    assert "host.hostname 'web01\\x1b[2J' holds control characters" in text
    assert "host.os_name" in refused(lambda r: setattr(r.host, "os_name", "Debian\x85"))


def test_there_are_no_fields_for_identity_client_or_site() -> None:
    """Who reports is the credential's agent; client and site come from its enrollment."""
    fields = {f.name for f in agent_pb2.Report.DESCRIPTOR.fields}
    fields |= {f.name for f in agent_pb2.HostFacts.DESCRIPTOR.fields}
    assert not fields & {"agent", "agent_id", "id", "client", "site", "tags"}


@pytest.mark.parametrize(
    "name",
    ["Cpu", "9lives", "cpu-usage", "cpu.usage", "cpu usage", "", "x" * 129, "ünits", "a:b"],
)
def test_metric_names_follow_the_exporter_rules(name: str) -> None:
    text = refused(add_sample(name))
    assert "collector 'cpu', samples[3]: metric name" in text
    assert "must match ^[a-z][a-z0-9_]{0,127}$" in text


@pytest.mark.parametrize("family", sorted(DERIVED_FAMILIES))
def test_metric_names_may_not_clash_with_the_servers_own_series(family: str) -> None:
    name = family.removeprefix("rmm_")
    text = refused(add_sample(name))
    assert f"metric name {name!r} is reserved: the server exports rmm_{name} series itself" in text


@pytest.mark.parametrize(
    "name", ["server_reports_received", "policy_evaluations", "alerts_firing", "notifications_x"]
)
def test_metric_names_may_not_clash_with_server_internals(name: str) -> None:
    assert "is reserved" in refused(add_sample(name))


@pytest.mark.parametrize(
    "label", ["__name__", "_x", "1a", "a-b", "a.b", "", "x" * 65, "é", "mountPoint"]
)
def test_label_names_follow_prometheus_rules(label: str) -> None:
    assert "label name" in refused(add_sample("cpu_usage_ratio", {label: "v"}))


@pytest.mark.parametrize("label", sorted(RESERVED_LABELS))
def test_agents_may_not_set_labels_the_server_owns(label: str) -> None:
    text = refused(add_sample("cpu_usage_ratio", {label: "other-client"}))
    assert f"label {label!r} is reserved: the server sets it" in text


def test_a_metric_name_checked_once_does_not_excuse_a_label_of_the_same_name() -> None:
    def edit(report: agent_pb2.Report) -> None:
        report.collectors[0].samples.add(name="client", value=1)  # a fine metric name
        report.collectors[0].samples.add(name="x", labels={"client": "evil"}, value=1)

    assert "label 'client' is reserved" in refused(edit)


def test_label_values_are_bounded() -> None:
    ok = good_report()
    ok.collectors[0].samples.add(name="x", labels={"a": "v" * MAX_LABEL_VALUE_CHARS})
    validate_report(ok)
    text = refused(add_sample("x", {"a": "v" * (MAX_LABEL_VALUE_CHARS + 1)}))
    assert "label a value is over 256 characters" in text


def test_labels_per_sample_are_bounded() -> None:
    labels = {f"l{i}": "v" for i in range(MAX_LABELS_PER_SAMPLE + 1)}
    assert "has over 8 labels" in refused(add_sample("x", labels))


def test_samples_per_report_are_bounded() -> None:
    def edit(report: agent_pb2.Report) -> None:
        samples = report.collectors[1].samples
        for i in range(MAX_SAMPLES_PER_REPORT):
            samples.add(name="disk_free_bytes", labels={"mountpoint": f"/m{i}"})

    assert "more than 20000 samples" in refused(edit)


def test_a_series_may_appear_only_once() -> None:
    text = refused(add_sample("cpu_core_usage_ratio", {"core": "0"}))
    assert "series cpu_core_usage_ratio with labels {'core': '0'} appears twice" in text


def test_collectors_are_named_bounded_and_unique() -> None:
    assert "collectors[1].name 'bad name' must match" in refused(
        lambda r: setattr(r.collectors[1], "name", "bad name")
    )
    assert "collector 'cpu' appears twice" in refused(lambda r: r.collectors.add(name="cpu"))

    def many(report: agent_pb2.Report) -> None:
        for i in range(MAX_COLLECTORS):
            report.collectors.add(name=f"c{i}")

    assert "258 collectors; at most 256" in refused(many)
    assert "collector 'cpu': error is 4097 characters long" in refused(
        lambda r: setattr(r.collectors[0], "error", "e" * 4097)
    )
    for bad in (-1.0, math.nan, math.inf):

        def edit(report: agent_pb2.Report, bad: float = bad) -> None:
            report.collectors[0].duration_seconds = bad

        assert "duration_seconds" in refused(edit)
    assert "info_json is over 4 MiB" in refused(
        lambda r: setattr(r.collectors[0], "info_json", b" " * (4 * 1024 * 1024 + 1))
    )


def test_inventory_must_match_its_hash() -> None:
    def edit(report: agent_pb2.Report) -> None:
        report.inventory.json = b'{"hardware": {}}'
        report.inventory.hash = inventory_hash(b"{}")

    assert "inventory.hash does not match its content" in refused(edit)


def promtool_lint(text: str) -> tuple[int, str]:
    promtool = which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing (Debian package prometheus)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    return result.returncode, result.stdout + result.stderr


def test_accepted_reports_render_metrics_promtool_accepts() -> None:
    """A report that passes renders, with the whole /metrics page, into text promtool passes."""
    fleet = Fleet()
    record = AgentRecord(id="a1", credential_hash="", client='acme "x"', site="hq\\", enrolled_at=0)
    report = good_report()
    report.collectors[0].samples.add(name="made_up_total", labels={"kind": "a"}, value=3)
    validate_report(report)
    fleet.add(record, report)
    text = MetricsRenderer(fleet, CollectorRegistry()).render().decode()
    assert 'rmm_disk_free_bytes{client="acme \\"x\\"",site="hq\\\\",agent="a1",mountpoint=' in text
    code, output = promtool_lint(text)
    assert code == 0, output


def candidate_names() -> list[str]:
    prefixes = ["", "pico", "milli", "kilo", "kibi", "mebi", "mega", "giga", "exa"]
    units = ["seconds", "bytes", "bits", "meters", "celsius", "kelvin", "kelvins", "minutes"]
    units += ["hours", "days", "weeks", "years", "ratio", "hertz", "joules", "watts", "volts"]
    names = [f"x_{prefix}{unit}" for prefix in prefixes for unit in units]
    words = ["s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"]
    words += ["min", "hz", "gib", "gauge", "counter", "histogram", "summary", "info", "gauges"]
    names += [f"x_{word}_y" for word in words]
    names += ["x_count", "x_sum", "x_bucket", "x_created", "x_total", "x_info", "count_x"]
    return names


def test_naming_rules_agree_with_promtool_both_ways() -> None:
    """Each candidate name is accepted exactly when promtool's linter has nothing against it."""
    names = candidate_names()
    text = "".join(f"# HELP rmm_{n} h\n# TYPE rmm_{n} gauge\nrmm_{n} 1\n" for n in names)
    code, output = promtool_lint(text)
    assert code in (0, 3), output
    flagged = {line.split(" ", 1)[0].removeprefix("rmm_") for line in output.splitlines()}
    flagged.discard("x_total")  # a gauge with _total: the exporter renders those as counters
    accepted = set()
    for name in names:
        report = good_report()
        report.collectors[0].samples.add(name=name, value=1)
        try:
            validate_report(report)
        except InvalidArgument:
            continue
        accepted.add(name)
    assert accepted == set(names) - flagged


def test_every_catalog_metric_is_accepted() -> None:
    report = good_report()
    del report.collectors[:]
    samples = report.collectors.add(name="everything").samples
    for name, spec in catalog().items():
        samples.add(name=name, labels={label: "v" for label in spec.labels}, value=1)
    validate_report(report)


def hostile_reports() -> list[tuple[agent_pb2.Report, str]]:
    """Reports a compromised host might send, each with what its refusal must name."""
    cases: list[tuple[Edit, str]] = [
        (add_sample("cpu_usage_ratio", {"client": "other-client"}), "label 'client' is reserved"),
        (add_sample("cpu_usage_ratio", {"agent": "someone-else"}), "label 'agent' is reserved"),
        (add_sample("agent_up"), "metric name 'agent_up' is reserved"),
        (add_sample('x"} 1\nrmm_agent_up{agent="y'), "metric name"),
        (add_sample("x", {"a": 'v"} 1\n'}), ""),  # a value is escaped, not refused
        (add_sample("cpu_core_usage_ratio", {"core": "0"}), "appears twice"),
        (lambda r: setattr(r.host, "os", "linux" * 10), "host.os is 50 characters long"),
        (lambda r: setattr(r, "sequence", 2**64 - 1), "sequence is over"),
        # Fits the column, but then every later report would be taken for a duplicate.
        (lambda r: setattr(r, "sequence", 2**63 - 1), "sequence is over"),
        (lambda r: setattr(r.collectors[0], "name", "x" * 100), "collectors[0].name"),
    ]
    reports = []
    for edit, reason in cases:
        report = good_report()
        edit(report)
        reports.append((report, reason))
    return reports


def test_hostile_reports_are_refused_and_metrics_stay_valid(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Against a real server with a real agent reporting: each hostile report gets an
    acknowledgement that refuses it and says why, the hostile stream goes on, the honest agent
    goes on, and /metrics passes promtool."""
    honest_id = enroll_agent(server, tmp_path / "honest")
    hostile_id = enroll_agent(server, tmp_path / "hostile", client="hostile-client")
    credential = json.loads((tmp_path / "hostile" / "identity.json").read_text())["credential"]
    honest = start_agent(tmp_path / "honest", tmp_path / "honest.log", 1.0)
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        wait_for(lambda: f'agent="{honest_id}"' in server.metrics(), 30, "the honest agent")
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        cases = hostile_reports()
        valid = good_report()
        valid.sequence = 100
        add_sample("x", {"a": 'v"} 1\n'})(valid)  # the latest report is what /metrics shows
        acks = list(
            stub.StreamReports(
                iter([case for case, _ in cases] + [valid]),
                metadata=bearer_metadata(credential),
                timeout=30,
            )
        )
        assert len(acks) == len(cases) + 1
        for ack, (report, reason) in zip(acks, cases, strict=False):
            if reason:
                assert reason in ack.rejected, (reason, ack.rejected)
                assert ack.rejected.startswith(f"report {report.sequence}")
        escaped = acks[4]
        assert not escaped.rejected  # label values are escaped on /metrics
        assert not acks[-1].rejected and acks[-1].sequence == 100  # the stream went on

        # Bytes that are not a Report (a string field with invalid UTF-8) and an oversized
        # message end that stream only; the server serves everyone else.
        raw = valid.SerializeToString().replace(b"web01", b"we\xff01")
        send_raw = channel.stream_stream(
            "/rmm.v1.AgentService/StreamReports",
            request_serializer=lambda data: data,
            response_deserializer=agent_pb2.ReportAck.FromString,
        )
        expected = [
            (raw, grpc.StatusCode.INVALID_ARGUMENT, "String field had bad UTF-8"),
            (b"\x0a" + b"\xff" * 64, grpc.StatusCode.INVALID_ARGUMENT, "is not an rmm.v1.Report"),
            (b"x" * (17 * 1024 * 1024), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
        ]
        for payload, code, words in expected:
            with pytest.raises(grpc.RpcError) as caught:
                list(send_raw(iter([payload]), metadata=bearer_metadata(credential), timeout=30))
            assert caught.value.code() == code and words in (caught.value.details() or "")
        before = rmm_json(server, "agents", "show", honest_id)["last_sequence"]
        wait_for(
            lambda: rmm_json(server, "agents", "show", honest_id)["last_sequence"] > before,
            20,
            "the honest agent's next report",
        )
        metrics = server.metrics()
    finally:
        channel.close()
        honest.terminate()
        honest.wait(10)
    shown = rmm_json(server, "agents", "show", hostile_id)
    assert (shown["client"], shown["site"]) == ("hostile-client", "hq")
    assert shown["last_sequence"] == 100
    assert f'client="hostile-client",site="hq",agent="{hostile_id}"' in metrics
    assert 'rmm_x{client="hostile-client",site="hq",' in metrics
    assert 'a="v\\"} 1\\n"' in metrics
    code, output = promtool_lint(metrics)
    assert code == 0, output


def test_a_flat_json_flood_within_the_byte_limits_is_refused_before_it_is_decoded() -> None:
    # 1.4 million empty arrays in 4 MiB of info, 2.8 million in 8 MiB of inventory: depth 2 and
    # within every byte limit, yet decoding and walking them held the server's event loop 8 s.
    flat_info = b"[" + b"[]," * 1_398_099 + b"[]]"
    flat_inventory = b"[" + b"[]," * 2_796_200 + b"[]]"

    def flood_info(report: agent_pb2.Report) -> None:
        report.collectors[0].info_json = flat_info

    def flood_inventory(report: agent_pb2.Report) -> None:
        report.inventory.json = flat_inventory
        report.inventory.hash = inventory_hash(flat_inventory)

    for edit, what in ((flood_info, "info_json holds over"), (flood_inventory, "inventory.json")):
        started = time.perf_counter()
        message = refused(edit)
        assert what in message and "arrays and objects" in message
        # Counted, not decoded: far below the seconds decoding took (a generous bound for a
        # loaded machine; counting 8 MiB takes a few milliseconds).
        assert time.perf_counter() - started < 1.0


def test_info_of_several_collectors_counts_together() -> None:
    # 6,000 arrays in each of two collectors: each alone fits, the report does not.
    part = b"[" + b"[]," * 5_999 + b"[]]"

    def edit(report: agent_pb2.Report) -> None:
        report.collectors[0].info_json = part
        report.collectors[1].info_json = part

    assert "all collectors' info of one report together" in refused(edit)
    report = good_report()
    report.collectors[0].info_json = part
    validate_report(report)
