"""Structure once, values every time: each agent's validated series set, remembered.

An agent's reports repeat the same collectors, metric names and label sets, report after report;
only the values move. Checking names and labels and sorting label sets is most of what
validate_report() costs (about 270 µs of a 100-sample report). Here a report's *shape* (its
collectors' names and, in order, each sample's name and labels, with every other field left out)
is taken by protobuf's C code in one parse of the serialised report (about 20 µs): when it is the
shape this agent's last good report had, the report needs only what can differ between two
reports of one shape checked (its own fields, each collector's error, duration and info, the
inventory) and its values read; the series keys come from the shape, already validated, sorted
and interned. Any other shape goes through validate_report() in full and, when it passes,
becomes the agent's shape.

Nothing is checked less: every check validate_report() makes on a sample is about its name and
labels (values may be NaN or infinite), and those are what a shape fixes. Shapes are interned by
digest across agents (agents of one kind report the same series), bounded in number, so one agent
sending a new shape every report costs a full validation each time and at most one shape's memory.
"""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from rmm_common.errors import InvalidArgument
from rmm_proto import agent_pb2
from rmm_server.reports import (
    MAX_COLLECTORS,
    ReportSeries,
    check_collector_values,
    check_inventory,
    check_report_fields,
    validate_report,
)

# Shapes kept across agents; agents hold their own shape whatever this evicts.
MAX_SHAPES = 4096

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def _shape_message() -> type[Message]:
    """Build rmm.shape.Report: rmm.v1.Report with only collectors[].name and
    collectors[].samples[].{name, labels}, under the same field numbers (every other field is
    unknown to it and discarded)."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="rmm_server/report_shape.proto", package="rmm.shape", syntax="proto3"
    )
    sample = file.message_type.add(name="Sample")
    sample.field.add(name="name", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    entry = sample.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    sample.field.add(
        name="labels",
        number=2,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".rmm.shape.Sample.LabelsEntry",
    )
    collector = file.message_type.add(name="Collector")
    collector.field.add(name="name", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    collector.field.add(
        name="samples",
        number=5,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".rmm.shape.Sample",
    )
    report = file.message_type.add(name="Report")
    report.field.add(
        name="collectors",
        number=6,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".rmm.shape.Collector",
    )
    # The numbers must be rmm.v1's: a drift would make every shape empty, and so equal.
    source = agent_pb2.CollectorResult.DESCRIPTOR
    assert agent_pb2.Report.DESCRIPTOR.fields_by_name["collectors"].number == 6
    assert source.fields_by_name["samples"].number == 5
    assert source.fields_by_name["name"].number == 1
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("rmm.shape.Report"))


_ShapeReport = _shape_message()


def shape_digest(raw: bytes) -> bytes:
    """Return the digest of the shape of the serialised report `raw`: equal for two reports
    whose collectors, sample names and label sets are the same, in the same order."""
    shape = _ShapeReport.FromString(raw)
    shape.DiscardUnknownFields()
    # Deterministic: map entries (labels) in key order, so label order on the wire is no change.
    return hashlib.blake2b(shape.SerializeToString(deterministic=True), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Shape:
    """A validated series set: per collector, its name and its samples' keys in order."""

    digest: bytes
    collectors: tuple[str, ...]
    keys: tuple[tuple[SeriesKey, ...], ...]

    def size(self) -> int:
        return sum(len(keys) for keys in self.keys)


def _interned(series: ReportSeries, collectors: tuple[str, ...], digest: bytes) -> Shape:
    """Return the shape of validated `series`, with its strings interned: agents of one kind
    report the same names and label values, so thousands of shapes share their text."""
    keys = tuple(
        tuple(
            (sys.intern(name), tuple((sys.intern(k), sys.intern(v)) for k, v in labels))
            for name, labels, _value in collector
        )
        for collector in series
    )
    return Shape(digest, tuple(sys.intern(name) for name in collectors), keys)


class ReportShapes:
    """Validate reports, each agent's unchanged structure once (see the module's doc)."""

    def __init__(self, max_shapes: int = MAX_SHAPES) -> None:
        self.max_shapes = max_shapes
        self._shapes: OrderedDict[bytes, Shape] = OrderedDict()
        self._by_agent: dict[str, Shape] = {}
        # Reports whose shape was the agent's last one (values checked only), and the others.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._shapes)

    def shape_of(self, agent_id: str) -> Shape | None:
        """Return the shape of the agent's last good report, if one is known."""
        return self._by_agent.get(agent_id)

    def forget(self, agent_id: str) -> None:
        """Drop what is known of an agent (removed or revoked)."""
        self._by_agent.pop(agent_id, None)

    def validate(
        self, agent_id: str, report: agent_pb2.Report, raw: bytes | None = None
    ) -> ReportSeries:
        """Check `report` of `agent_id` as validate_report() does and return its samples as
        Series; `raw`: the report serialised (computed when not given). Raise InvalidArgument
        naming what is wrong, with validate_report()'s messages."""
        if raw is None:
            raw = report.SerializeToString()
        digest = shape_digest(raw)
        known = self._by_agent.get(agent_id)
        if known is None or known.digest != digest:
            known = self._shapes.get(digest)
            if known is not None:
                self._shapes.move_to_end(digest)
        if known is None:
            self.misses += 1
            series = validate_report(report)
            self._learn(agent_id, report, series, digest)
            return series
        self.hits += 1
        series = _values(report, known)
        self._by_agent[agent_id] = known
        return series

    def _learn(
        self, agent_id: str, report: agent_pb2.Report, series: ReportSeries, digest: bytes
    ) -> None:
        shape = _interned(series, tuple(c.name for c in report.collectors), digest)
        self._shapes[digest] = shape
        if len(self._shapes) > self.max_shapes:
            self._shapes.popitem(last=False)
        self._by_agent[agent_id] = shape


def _values(report: agent_pb2.Report, shape: Shape) -> ReportSeries:
    """Check what may differ between two reports of `shape` and return the Series, keys from
    the shape and values from the report. Same checks, order and messages as
    validate_report() (whose structural checks `shape` passed already)."""
    where = f"report {report.sequence}"
    check_report_fields(report, where)
    collectors = report.collectors
    if len(collectors) > MAX_COLLECTORS:  # a shape of more never passed, but say it as it does
        raise InvalidArgument(
            f"{where}: {len(collectors)} collectors; at most {MAX_COLLECTORS} are allowed"
        )
    parsed: ReportSeries = []
    totals = [0, 0]  # info bytes and info containers, all collectors together
    for collector, name, keys in zip(collectors, shape.collectors, shape.keys, strict=True):
        check_collector_values(collector, f"{where}, collector {name!r}", totals)
        samples = collector.samples
        parsed.append(
            [(key[0], key[1], sample.value) for key, sample in zip(keys, samples, strict=True)]
        )
    if report.HasField("inventory"):
        check_inventory(report.inventory, where)
    return parsed
