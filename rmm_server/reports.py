"""What the server does with one agent report: check it, summarise it, pack it for storage.

Pure functions, no I/O: the ingest pipeline and the tests call them directly.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from rmm_common.boundedjson import MAX_JSON_DEPTH, decode_bounded, json_depth, load_json_bounded
from rmm_common.errors import InvalidArgument
from rmm_common.text import INVISIBLE_RE
from rmm_proto import agent_pb2
from rmm_server.storage import schema

# Stricter than Prometheus' [a-zA-Z_:][a-zA-Z0-9_:]*: the exporter adds the rmm_ prefix.
METRIC_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,127}$")
# Stricter than Prometheus' [a-zA-Z_][a-zA-Z0-9_]*: snake case as promtool wants it, and no
# leading underscore, so never "__".
LABEL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# What `promtool check metrics` (client_golang's promlint) refuses in a gauge's or counter's name,
# word by word: the exporter's output must pass it whatever the agents send.
_UNIT_PREFIXES = (
    "pico|nano|micro|milli|centi|deci|deca|hecto|kilo|kibi|mega|mibi|giga|gibi|tera|tebi|peta|pebi"
)
_UNITS = "amperes|bits|bytes|celsius|days|grams|hours|joules|kelvins?|meters|metres|minutes|"
_UNITS += "seconds|volts|weeks"
_NOT_BASE_UNIT_RE = re.compile(
    rf"^(?:(?:{_UNIT_PREFIXES})(?:{_UNITS})|minutes|hours|days|weeks|bits|kelvins)$"
)
_UNIT_ABBREVIATIONS = frozenset(
    {"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"}
)
_TYPE_WORDS = frozenset({"gauge", "counter", "histogram", "summary"})
# Suffixes of histogram and summary series, which the exporter never renders.
_RESERVED_SUFFIXES = ("_count", "_sum", "_bucket")
# Families the server exports itself (exporter.DERIVED_FAMILIES, rmm_server_*, the alerting and
# notification internals): an agent's series named so would clash with them on /metrics.
RESERVED_METRIC_PREFIXES = ("agent_", "agents", "server_", "policy_", "alert", "notification")
# The server sets client, site and agent on every exported series, Prometheus job and instance;
# alerts and silences match on rule, severity, tier, hostname and alertname: an agent may not.
RESERVED_LABELS = frozenset(
    {
        "client",
        "site",
        "agent",
        "job",
        "instance",
        "rule",
        "severity",
        "tier",
        "hostname",
        "alertname",
        # Histogram buckets and summary quantiles: the exporter renders gauges and counters.
        "le",
        "quantile",
    }
)
COLLECTOR_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_COLLECTORS = 256
MAX_COLLECTOR_ERROR_CHARS = 4096
MAX_SAMPLES_PER_REPORT = 20_000
MAX_LABELS_PER_SAMPLE = 8
MAX_LABEL_VALUE_CHARS = 256
# Collector info of one report, all collectors together (a real report carries about 4 KB).
MAX_INFO_BYTES = 4 * 1024 * 1024
# An inventory (hardware and software lists; a workstation's is about 100 KB).
MAX_INVENTORY_BYTES = 8 * 1024 * 1024
# Arrays and objects (counted as '[' and '{', strings included) in the JSON one report brings:
# decoding is what a hostile agent could make the server's event loop do, and a flat document
# of 4 MiB holds 1.4 million of them (8 s to decode and walk). A real report's info holds about
# 200 and a workstation's inventory one per package (780 here); the limits bound one report's
# decoding to tens of milliseconds.
MAX_INFO_CONTAINERS = 10_000
MAX_INVENTORY_CONTAINERS = 20_000
# Sequences are stored as signed 64-bit integers (at most 2^63 - 1); a report with a sequence
# near that bound would leave its agent no room, and every later report would be acknowledged
# as a duplicate and dropped. 2^62 leaves more room than any agent can use (4.6e18 reports)
# while refusing the values a corrupted or hostile counter jumps to.
MAX_SEQUENCE = 2**62 - 1
MAX_INTERVAL_SECONDS = 86_400
MAX_AGENT_VERSION_CHARS = 64
MAX_HASH_CHARS = 64
# The contract names them: every field of rmm.v1.HostFacts.
HOST_FIELDS = tuple(field.name for field in agent_pb2.HostFacts.DESCRIPTOR.fields)
# Each host fact is bounded by its column: PostgreSQL refuses a longer value, and one refused row
# would fail the whole batch of reports it is written with.
HOST_FIELD_MAX_CHARS: dict[str, int] = {
    name: int(getattr(schema.agents.c[name].type, "length", 0) or 200) for name in HOST_FIELDS
}
# Control (C0, C1), format (bidi overrides, zero-width) and line-separator characters: no host
# name or OS name has them, and they make one name read as another (rmm_common.text).
CONTROL_RE = INVISIBLE_RE
# Metric and label names already found good: whether a name is good depends on the name alone,
# and the same few hundred come in every report. Bounded, so that made-up names cannot grow it.
MAX_KNOWN_NAMES = 10_000
_good_metric_names: set[str] = set()
_good_label_names: set[str] = set()

# One sample as the server uses it: metric name, labels sorted by name, value. Protobuf maps are
# slow to read from Python: the report is read once, by validate_report(), and the exporter and
# the policy input take its samples from there.
Series = tuple[str, tuple[tuple[str, str], ...], float]
ReportSeries = list[list[Series]]  # one list per collector, in the report's order


def report_series(report: agent_pb2.Report) -> ReportSeries:
    """Return `report`'s samples as Series, without checking them (a stored report)."""
    return [
        [(s.name, _sorted_labels(s.labels), s.value) for s in collector.samples]
        for collector in report.collectors
    ]


def _sorted_labels(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    # Not labels.items(): on a protobuf map that is the Python ItemsView, twice as slow, and
    # a quarter of the samples have no labels at all.
    return tuple(sorted([(name, labels[name]) for name in labels])) if labels else ()


def validate_report(report: agent_pb2.Report) -> ReportSeries:
    """Raise InvalidArgument naming the first field of `report` the server cannot accept;
    return its samples as Series (see report_series) when it is good.

    Who sent it is not in the report: the agent is the one whose credential the call carries,
    and its client and site come from its enrollment; nothing here can change either. Values may
    be NaN or infinite (the exposition format has NaN, +Inf and -Inf); names, label sets, sizes
    and counts are checked so that no report can break /metrics for the others.
    """
    where = f"report {report.sequence}"
    check_report_fields(report, where)
    if len(report.collectors) > MAX_COLLECTORS:
        raise InvalidArgument(
            f"{where}: {len(report.collectors)} collectors; at most {MAX_COLLECTORS} are allowed"
        )
    collectors: set[str] = set()
    series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    parsed: ReportSeries = []
    total = 0
    info_totals = [0, 0]  # bytes and containers of info_json, all collectors together
    for index, collector in enumerate(report.collectors):
        cwhere = _check_collector_fields(collector, index, where, collectors)
        total += len(collector.samples)
        if total > MAX_SAMPLES_PER_REPORT:
            raise InvalidArgument(f"{where}: more than {MAX_SAMPLES_PER_REPORT} samples")
        _check_collector_info(collector, cwhere, info_totals)
        parsed.append(
            [
                _validate_sample(sample, cwhere, sample_index, series)
                for sample_index, sample in enumerate(collector.samples)
            ]
        )
    if report.HasField("inventory"):
        check_inventory(report.inventory, where)
    return parsed


def check_collector_values(
    collector: agent_pb2.CollectorResult, cwhere: str, info_totals: list[int]
) -> None:
    """Check what may differ between two reports of one shape in a collector: its error,
    duration and info (`info_totals`: bytes and containers of the info seen so far in the
    report, updated), in validate_report()'s order and words."""
    _check_collector_outcome(collector, cwhere)
    _check_collector_info(collector, cwhere, info_totals)


def _check_collector_info(
    collector: agent_pb2.CollectorResult, cwhere: str, info_totals: list[int]
) -> None:
    info = collector.info_json
    if not info:
        return
    info_totals[0] += len(info)
    if info_totals[0] > MAX_INFO_BYTES:
        raise InvalidArgument(
            f"{cwhere}: info_json is over {MAX_INFO_BYTES // (1024 * 1024)} MiB "
            "(all collectors' info of one report together)"
        )
    containers = json_containers(info)
    info_totals[1] += containers
    if info_totals[1] > MAX_INFO_CONTAINERS:
        raise InvalidArgument(
            f"{cwhere}: info_json holds over {MAX_INFO_CONTAINERS:,} arrays and objects "
            "(all collectors' info of one report together, counted as '[' and '{')"
        )
    check_json_depth(info, f"{cwhere}: info_json", containers)


def check_report_fields(report: agent_pb2.Report, where: str) -> None:
    """Raise InvalidArgument naming the first of the report's own fields that is wrong."""
    if report.sequence == 0:
        raise InvalidArgument("report sequence 0 is invalid: sequences start at 1")
    if report.sequence > MAX_SEQUENCE:
        raise InvalidArgument(
            f"{where}: sequence is over {MAX_SEQUENCE} (2^62 - 1), the most the server accepts "
            "so that every agent keeps room for later reports; re-enroll the agent (its state "
            "directory holds a corrupted counter)"
        )
    if not math.isfinite(report.collected_at) or report.collected_at <= 0:
        raise InvalidArgument(f"{where}: collected_at {report.collected_at!r} is not a time")
    if report.interval_seconds > MAX_INTERVAL_SECONDS:
        raise InvalidArgument(
            f"{where}: interval_seconds {report.interval_seconds} is over {MAX_INTERVAL_SECONDS}"
        )
    _check_length(f"{where}: agent_version", report.agent_version, MAX_AGENT_VERSION_CHARS)
    if CONTROL_RE.search(report.agent_version):
        # PostgreSQL refuses NUL in text, and one refused row fails its whole batch.
        raise InvalidArgument(
            f"{where}: agent_version {report.agent_version!r} holds control characters"
        )
    _check_length(f"{where}: inventory_hash", report.inventory_hash, MAX_HASH_CHARS)
    for name, limit in HOST_FIELD_MAX_CHARS.items():
        value = getattr(report.host, name)
        _check_length(f"{where}: host.{name}", value, limit)
        if CONTROL_RE.search(value):
            raise InvalidArgument(f"{where}: host.{name} {value!r} holds control characters")


def _check_collector_fields(
    collector: agent_pb2.CollectorResult, index: int, where: str, collectors: set[str]
) -> str:
    """Check a collector's name (new to `collectors`, then added), error and duration; return
    the prefix its messages take."""
    name = collector.name
    if not COLLECTOR_NAME_RE.match(name):
        raise InvalidArgument(
            f"{where}: collectors[{index}].name {name[:80]!r} must match "
            f"{COLLECTOR_NAME_RE.pattern}"
        )
    if name in collectors:
        raise InvalidArgument(f"{where}: collector {name!r} appears twice")
    collectors.add(name)
    cwhere = f"{where}, collector {name!r}"
    _check_collector_outcome(collector, cwhere)
    return cwhere


def _check_collector_outcome(collector: agent_pb2.CollectorResult, cwhere: str) -> None:
    _check_length(f"{cwhere}: error", collector.error, MAX_COLLECTOR_ERROR_CHARS)
    if not math.isfinite(collector.duration_seconds) or collector.duration_seconds < 0:
        raise InvalidArgument(
            f"{cwhere}: duration_seconds {collector.duration_seconds!r} is not a duration"
        )


def check_inventory(inventory: agent_pb2.Inventory, where: str) -> None:
    """Raise InvalidArgument when the inventory is too big, its hash wrong or its JSON too deep."""
    raw = inventory.json
    if len(raw) > MAX_INVENTORY_BYTES:
        raise InvalidArgument(
            f"{where}: inventory.json is {len(raw)} bytes; at most {MAX_INVENTORY_BYTES}"
        )
    containers = json_containers(raw)
    if containers > MAX_INVENTORY_CONTAINERS:
        raise InvalidArgument(
            f"{where}: inventory.json holds {containers:,} arrays and objects (counted as '[' "
            f"and '{{'); at most {MAX_INVENTORY_CONTAINERS:,}"
        )
    expected = inventory_hash(raw)
    if inventory.hash != expected:
        raise InvalidArgument(f"{where}: inventory.hash does not match its content")
    check_json_depth(raw, f"{where}: inventory.json", containers)


_OPENERS = (b"{", b"[")


def json_containers(raw: bytes) -> int:
    """Return an upper bound of the arrays and objects in `raw` (its '[' and '{'), at C speed."""
    return raw.count(_OPENERS[0]) + raw.count(_OPENERS[1])


def check_json_depth(raw: bytes, what: str, containers: int, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise InvalidArgument naming `what` when the JSON document `raw` nests arrays and
    objects deeper than `limit`. A document that is not JSON at all passes: readers show it as
    such (LazyInfo), and refusing it here would change what agents may send.

    Cost: a document with at most `limit` brackets in all (`containers`, json_containers(raw),
    which its caller counted for its own bound; most collectors' info) is passed without
    another look; others are decoded once (about 100 us for a 4 KB process list).
    """
    if containers <= limit:
        return  # it cannot hold more arrays and objects than brackets
    try:
        depth = json_depth(json.loads(raw))
    except RecursionError:
        depth = -1
    except ValueError:
        return
    if depth < 0 or depth > limit:
        raise InvalidArgument(
            f"{what} nests arrays and objects "
            + ("too deeply to decode" if depth < 0 else f"{depth} levels deep")
            + f"; at most {limit} levels are accepted (flatten the document)"
        )


def readable_json(raw: bytes, what: str, limit: int = MAX_JSON_DEPTH) -> bytes:
    """Return stored JSON `raw` as it is when any reader can decode it, else a placeholder
    document saying why it is not shown (load_json_bounded)."""
    if raw.count(_OPENERS[0]) + raw.count(_OPENERS[1]) <= limit:
        return raw
    _value, problem = decode_bounded(raw, what, limit)
    return json.dumps({"error": problem}).encode() if problem else raw


def _naming_problem(name: str) -> str:
    """Return what Prometheus' naming rules (as promtool lints them) say against `name`."""
    if name.endswith(_RESERVED_SUFFIXES):
        return "_count, _sum and _bucket end histogram and summary series only"
    for word in name.split("_"):
        if _NOT_BASE_UNIT_RE.match(word):
            return f"{word!r} is not a base unit (use seconds, bytes, meters, grams...)"
        if word in _UNIT_ABBREVIATIONS:
            return f"{word!r} is an abbreviated unit (spell out the base unit, e.g. seconds)"
        if word in _TYPE_WORDS:
            return f"{word!r} is a metric type, not part of a name"
    return ""


def _check_length(what: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgument(f"{what} is {len(value)} characters long; at most {limit}")


def _validate_sample(
    sample: Any,
    cwhere: str,
    index: int,
    series: set[tuple[str, tuple[tuple[str, str], ...]]],
) -> Series:
    # Messages are built only on failure: this runs for every sample of every report.
    name = sample.name
    if name not in _good_metric_names:
        if not METRIC_NAME_RE.match(name):
            raise InvalidArgument(
                f"{cwhere}, samples[{index}]: metric name {name[:140]!r} must match "
                f"{METRIC_NAME_RE.pattern}"
            )
        if name.startswith(RESERVED_METRIC_PREFIXES):
            raise InvalidArgument(
                f"{cwhere}, samples[{index}]: metric name {name!r} is reserved: the server "
                f"exports rmm_{name} series itself"
            )
        problem = _naming_problem(name)
        if problem:
            raise InvalidArgument(f"{cwhere}, samples[{index}]: metric name {name!r}: {problem}")
        _remember(_good_metric_names, name)
    labels = sample.labels
    if len(labels) > MAX_LABELS_PER_SAMPLE:
        raise InvalidArgument(
            f"{cwhere}, samples[{index}]: metric {name} has over {MAX_LABELS_PER_SAMPLE} labels"
        )
    items = _sorted_labels(labels)
    for label, value in items:
        if label not in _good_label_names:
            if not LABEL_NAME_RE.match(label):
                raise InvalidArgument(
                    f"{cwhere}, samples[{index}]: metric {name} label name {label[:80]!r} must "
                    f"match {LABEL_NAME_RE.pattern}"
                )
            if label in RESERVED_LABELS:
                raise InvalidArgument(
                    f"{cwhere}, samples[{index}]: metric {name} label {label!r} is reserved: the "
                    "server sets it"
                )
            _remember(_good_label_names, label)
        if len(value) > MAX_LABEL_VALUE_CHARS:
            raise InvalidArgument(
                f"{cwhere}, samples[{index}]: metric {name} label {label} value is over "
                f"{MAX_LABEL_VALUE_CHARS} characters"
            )
    key = (name, items)
    if key in series:
        raise InvalidArgument(
            f"{cwhere}, samples[{index}]: series {name} with labels {dict(items)} appears twice "
            "(a series has one value in a report)"
        )
    series.add(key)
    return (name, items, sample.value)


def _remember(known: set[str], name: str) -> None:
    if len(known) >= MAX_KNOWN_NAMES:
        known.clear()
    known.add(name)


def inventory_hash(canonical_json: bytes) -> str:
    """Return the hash that names an inventory (the agent computes the same)."""
    return hashlib.sha256(canonical_json).hexdigest()


def host_facts(host: agent_pb2.HostFacts) -> dict[str, str]:
    """Return the host fields a report or an enrollment carries, for the agent's record."""
    return {name: getattr(host, name) for name in HOST_FIELDS}


def summarize(report: agent_pb2.Report, series: ReportSeries | None = None) -> dict[str, Any]:
    """Return the key metrics an operator sees in `rmm agents list` (`series`: the report's
    samples as validate_report() returned them, which are faster to read than the report's)."""
    summary: dict[str, Any] = {"collector_errors": 0}
    if report.dropped_reports:  # kept, so a server restart does not announce old losses again
        summary["dropped_reports"] = report.dropped_reports
    if series is not None:
        summary["collector_errors"] = sum(not collector.ok for collector in report.collectors)
        _summarize_series(series, summary)
        return summary
    disk_max = -1.0
    for collector in report.collectors:
        if not collector.ok:
            summary["collector_errors"] += 1
        for sample in collector.samples:
            name = sample.name
            if name == "cpu_usage_ratio" and not sample.labels:
                summary["cpu_usage_ratio"] = sample.value
            elif name == "memory_usage_ratio":
                summary["memory_used_ratio"] = sample.value
            elif name == "system_uptime_seconds":
                summary["uptime_seconds"] = sample.value
            elif name == "disk_usage_ratio" and sample.value > disk_max:
                disk_max = sample.value
                summary["disk_used_ratio_max"] = sample.value
                summary["disk_used_ratio_max_mountpoint"] = sample.labels.get("mountpoint", "")
    return summary


def _summarize_series(series: ReportSeries, summary: dict[str, Any]) -> None:
    """Fill `summary` as summarize() does from a report's samples, from its Series."""
    disk_max = -1.0
    for collector in series:
        for name, labels, value in collector:
            if name == "cpu_usage_ratio" and not labels:
                summary["cpu_usage_ratio"] = value
            elif name == "memory_usage_ratio":
                summary["memory_used_ratio"] = value
            elif name == "system_uptime_seconds":
                summary["uptime_seconds"] = value
            elif name == "disk_usage_ratio" and value > disk_max:
                disk_max = value
                summary["disk_used_ratio_max"] = value
                summary["disk_used_ratio_max_mountpoint"] = next(
                    (v for k, v in labels if k == "mountpoint"), ""
                )


def compress(data: bytes) -> bytes:
    """Pack a blob for storage (zlib level 1: most of the gain for little CPU)."""
    return zlib.compress(data, 1)


def decompress(data: bytes) -> bytes:
    """Unpack a blob stored with compress()."""
    return zlib.decompress(data)


class LazyInfo(Mapping[str, Any]):
    """Collector info of a report, decoded on first access (most evaluations never read it)."""

    def __init__(self, report: agent_pb2.Report) -> None:
        self._raw = {c.name: c.info_json for c in report.collectors if c.info_json}
        self._decoded: dict[str, Any] = {}

    @property
    def raw(self) -> Mapping[str, bytes]:
        """Return each collector's info as its undecoded JSON bytes (what is decoded from)."""
        return self._raw

    def __getitem__(self, name: str) -> Any:
        if name not in self._decoded:
            raw = self._raw[name]
            if raw.count(_OPENERS[0]) + raw.count(_OPENERS[1]) <= MAX_JSON_DEPTH:
                try:  # too few brackets to nest too deep: skip the depth walk
                    self._decoded[name] = json.loads(raw)
                except ValueError:
                    self._decoded[name] = {"error": "info is not valid JSON; it is not shown"}
            else:
                self._decoded[name] = load_json_bounded(raw, "info")
        return self._decoded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def software_changes(
    old_json: bytes | None, new_json: bytes
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (added, removed) packages as "name version" between two inventories."""

    def packages(raw: bytes | None) -> set[str]:
        if not raw:
            return set()
        document = load_json_bounded(raw, "inventory")
        software = document.get("software", {}) if isinstance(document, dict) else {}
        found = set()
        for package in software.get("packages", []) if isinstance(software, dict) else []:
            if isinstance(package, dict) and package.get("name"):
                found.add(f"{package['name']} {package.get('version', '')}".strip())
        return found

    before, after = packages(old_json), packages(new_json)
    if not before:  # the first inventory of an agent is not news
        return (), ()
    return tuple(sorted(after - before)), tuple(sorted(before - after))
