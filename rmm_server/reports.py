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

from rmm_common.errors import InvalidArgument
from rmm_proto import agent_pb2

METRIC_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,127}$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,63}$")
# The server sets these on every exported series; an agent may not.
RESERVED_LABELS = frozenset({"client", "site", "agent", "job", "instance"})
MAX_SAMPLES_PER_REPORT = 20_000
MAX_LABELS_PER_SAMPLE = 8
MAX_LABEL_VALUE_CHARS = 256
MAX_INFO_BYTES = 4 * 1024 * 1024
# The contract names them: every field of rmm.v1.HostFacts.
HOST_FIELDS = tuple(field.name for field in agent_pb2.HostFacts.DESCRIPTOR.fields)
HOST_FIELD_MAX_CHARS = 200


def validate_report(report: agent_pb2.Report) -> None:
    """Raise InvalidArgument naming the first thing in `report` the server cannot accept."""
    where = f"report {report.sequence}"
    if report.sequence == 0:
        raise InvalidArgument("report sequence 0 is invalid: sequences start at 1")
    if not math.isfinite(report.collected_at) or report.collected_at <= 0:
        raise InvalidArgument(f"{where}: collected_at {report.collected_at!r} is not a time")
    for name in HOST_FIELDS:
        if len(getattr(report.host, name)) > HOST_FIELD_MAX_CHARS:
            raise InvalidArgument(f"{where}: host.{name} is longer than {HOST_FIELD_MAX_CHARS}")
    total = 0
    for collector in report.collectors:
        total += len(collector.samples)
        if total > MAX_SAMPLES_PER_REPORT:
            raise InvalidArgument(f"{where}: more than {MAX_SAMPLES_PER_REPORT} samples")
        if len(collector.info_json) > MAX_INFO_BYTES:
            raise InvalidArgument(f"{where}: collector {collector.name!r} info is over 4 MiB")
        for sample in collector.samples:
            _validate_sample(sample, f"{where}, collector {collector.name!r}")
    if report.HasField("inventory"):
        expected = inventory_hash(report.inventory.json)
        if report.inventory.hash != expected:
            raise InvalidArgument(f"{where}: inventory hash does not match its content")


def _validate_sample(sample: Any, where: str) -> None:
    if not METRIC_NAME_RE.match(sample.name):
        raise InvalidArgument(
            f"{where}: metric name {sample.name!r} must match {METRIC_NAME_RE.pattern}"
        )
    if len(sample.labels) > MAX_LABELS_PER_SAMPLE:
        raise InvalidArgument(
            f"{where}: metric {sample.name} has over {MAX_LABELS_PER_SAMPLE} labels"
        )
    for label, value in sample.labels.items():
        if not LABEL_NAME_RE.match(label) or label in RESERVED_LABELS:
            raise InvalidArgument(
                f"{where}: metric {sample.name} label {label!r} is invalid or reserved"
            )
        if len(value) > MAX_LABEL_VALUE_CHARS:
            raise InvalidArgument(
                f"{where}: metric {sample.name} label {label} value is over "
                f"{MAX_LABEL_VALUE_CHARS} characters"
            )


def inventory_hash(canonical_json: bytes) -> str:
    """Return the hash that names an inventory (the agent computes the same)."""
    return hashlib.sha256(canonical_json).hexdigest()


def host_facts(host: agent_pb2.HostFacts) -> dict[str, str]:
    """Return the host fields a report or an enrollment carries, for the agent's record."""
    return {name: getattr(host, name) for name in HOST_FIELDS}


def summarize(report: agent_pb2.Report) -> dict[str, Any]:
    """Return the key metrics an operator sees in `rmm agents list`."""
    summary: dict[str, Any] = {"collector_errors": 0}
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

    def __getitem__(self, name: str) -> Any:
        if name not in self._decoded:
            raw = self._raw[name]
            try:
                self._decoded[name] = json.loads(raw)
            except ValueError:
                self._decoded[name] = {"error": "info is not valid JSON"}
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
        try:
            software = json.loads(raw).get("software", {})
        except (ValueError, AttributeError):
            return set()
        found = set()
        for package in software.get("packages", []) if isinstance(software, dict) else []:
            if isinstance(package, dict) and package.get("name"):
                found.add(f"{package['name']} {package.get('version', '')}".strip())
        return found

    before, after = packages(old_json), packages(new_json)
    if not before:  # the first inventory of an agent is not news
        return (), ()
    return tuple(sorted(after - before)), tuple(sorted(before - after))
