"""One agent's series as Prometheus text: its latest report turned into exposition fragments.

Rendered once, when the report arrives (a dict of family name to lines, UTF-8 encoded), within
the agent's budget of series and bytes; the fleet keeps each agent's fragments beside its record,
and the exporter (exporter.py) groups them by family at scrape time. Bytes, not str: a scrape
joins about 60 fragments per agent (600,000 at 10,000 agents) and encoding them there would cost
as much again as the join. Nothing here knows the fleet.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from math import isfinite
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from rmm_proto import agent_pb2
from rmm_server.report_shapes import MAX_SHAPES, Shape
from rmm_server.reports import ReportSeries, report_series

if TYPE_CHECKING:
    from prometheus_client import Counter

    from rmm_server.storage import AgentRecord

# The exporter's logger, as before this module was split from it: log settings name it.
log = logging.getLogger("rmm_server.exporter")

PREFIX = "rmm_"
AgentFragments = dict[str, bytes]  # family name -> exposition lines (each ending in "\n")

# What one agent's reported samples may take on /metrics. A real agent sends about 100 series in
# about 14 KB; a report inside every per-field limit could take 15 MB (20,000 samples with 8
# labels of 256 characters each), and every scrape would carry it.
DEFAULT_MAX_SERIES_PER_AGENT = 2_000
DEFAULT_MAX_BYTES_PER_AGENT = 512 * 1024


class ExportBudget:
    """Series and bytes of reported samples each agent may put on /metrics; what is cut is
    counted (`counter`, rmm_exporter_series_dropped_total, and per agent as
    rmm_agent_exporter_series_dropped) and logged once per agent."""

    def __init__(
        self,
        max_series: int = DEFAULT_MAX_SERIES_PER_AGENT,
        max_bytes: int = DEFAULT_MAX_BYTES_PER_AGENT,
        counter: Counter | None = None,
    ) -> None:
        self.max_series = max_series
        self.max_bytes = max_bytes
        self.counter = counter
        self.dropped_total = 0
        # Agents whose cut was logged: one line per agent, not one per report (bounded by the
        # enrolled agents; cleared when an agent fits again, so a new excess is told again).
        self._told: set[str] = set()
        self._lock = threading.Lock()

    def note(self, agent_id: str, dropped: int, kept: int) -> None:
        """Count `dropped` series of one report of `agent_id` (0: it fitted)."""
        if not dropped and agent_id not in self._told:
            return  # the usual case: no lock taken
        with self._lock:
            if not dropped:
                self._told.discard(agent_id)
                return
            self.dropped_total += dropped
            first = agent_id not in self._told
            self._told.add(agent_id)
        if self.counter is not None:
            self.counter.inc(dropped)
        if first:
            log.warning(
                "agent %s reports more than /metrics takes from one agent (%d series or %d "
                "bytes): %d series of its reports are left out, %d kept (counted in "
                "rmm_exporter_series_dropped_total; told once per agent)",
                agent_id,
                self.max_series,
                self.max_bytes,
                dropped,
                kept,
            )


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """Format a sample value for the text format."""
    if isfinite(value):  # one test for the usual case (about 100 calls a report)
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def agent_label_prefix(record: AgentRecord) -> str:
    """Return the labels every series of this agent carries, without braces."""
    return (
        f'client="{escape_label_value(record.client)}",'
        f'site="{escape_label_value(record.site)}",'
        f'agent="{escape_label_value(record.id)}"'
    )


def _labels(prefix: str, labels: Iterable[tuple[str, str]]) -> str:
    extra = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels))
    return "{" + prefix + ("," + extra if extra else "") + "}"


# Label sets seen in reports, rendered: agents send the same label sets report after report.
# Bounded (cleared when full) so that label values that change every report cannot grow it.
MAX_CACHED_LABEL_SETS = 50_000
_label_suffixes: dict[tuple[tuple[str, str], ...], str] = {}


def _label_suffix(items: tuple[tuple[str, str], ...]) -> str:
    """Return ',name="value"...' for labels sorted by name (empty for none)."""
    suffix = _label_suffixes.get(items)
    if suffix is None:
        suffix = "".join(f',{k}="{escape_label_value(v)}"' for k, v in items)
        if len(_label_suffixes) >= MAX_CACHED_LABEL_SETS:
            _label_suffixes.clear()
        _label_suffixes[items] = suffix
    return suffix


# Family names, one str object each: every agent's fragments then share their keys, which makes
# comparing two agents' family lists (exporter.py, per scrape) pointer comparisons. Bounded.
_family_names: dict[str, str] = {}


def _family_name(name: str) -> str:
    if len(_family_names) >= MAX_CACHED_LABEL_SETS:
        _family_names.clear()
    family = _family_names[name] = sys.intern(PREFIX + name)
    return family


# The longest text format_value() gives a finite float ("-2.2250738585072014e-308").
_MAX_VALUE_TEXT = 24


@dataclass(frozen=True, slots=True)
class _Layout:
    """A shape's exposition lines with the agent's labels and the values left open: per family,
    one %-format of all its lines and the picker of its arguments from [prefix, *texts], where
    texts are the samples' values, then each collector's success, then its duration."""

    families: tuple[tuple[str, str, itemgetter[Any]], ...]
    samples: int
    collectors: int
    lines: int  # sample and collector lines: each takes the agent's prefix once
    fixed_bytes: int  # what the lines take without the prefixes and the values


# Layouts by shape digest: agents of one kind share a shape, so a few serve the fleet. Bounded
# as the shapes are (cleared when full).
_layouts: dict[bytes, _Layout] = {}


def _layout_of(shape: Shape) -> _Layout:
    layout = _layouts.get(shape.digest)
    if layout is None:
        if len(_layouts) >= MAX_SHAPES:
            _layouts.clear()
        layout = _layouts[shape.digest] = _build_layout(shape)
    return layout


def _build_layout(shape: Shape) -> _Layout:
    samples = shape.size()
    formats: dict[str, list[str]] = defaultdict(list)
    picks: dict[str, list[int]] = defaultdict(list)

    def add(family: str, labels: str, text_index: int) -> None:
        # "%" in a label value is text, not a conversion.
        formats[family].append(f"{family}{{%s{labels.replace('%', '%%')}}} %s\n")
        picks[family] += (0, text_index + 1)

    position = 0
    for number, (collector, keys) in enumerate(zip(shape.collectors, shape.keys, strict=True)):
        collector_label = f',collector="{escape_label_value(collector)}"'
        add("rmm_agent_collector_success", collector_label, samples + number)
        add(
            "rmm_agent_collector_duration_seconds",
            collector_label,
            samples + len(shape.collectors) + number,
        )
        for name, labels in keys:
            add(_family_names.get(name) or _family_name(name), _label_suffix(labels), position)
            position += 1
    families = tuple(
        (family, "".join(formats[family]), itemgetter(*picks[family])) for family in formats
    )
    lines = sum(len(f) for f in formats.values())
    fixed = sum(len(line.replace("%%", "%")) - 4 for f in formats.values() for line in f)
    return _Layout(families, samples, len(shape.collectors), lines, fixed)


def _render_by_layout(
    report: agent_pb2.Report,
    series: ReportSeries,
    layout: _Layout,
    prefix: str,
    lines: dict[str, list[str]],
) -> bool:
    collectors = report.collectors
    if len(collectors) != layout.collectors:
        return False
    texts = [prefix]
    texts += [format_value(value) for samples in series for _name, _labels, value in samples]
    texts += ["1" if collector.ok else "0" for collector in collectors]
    texts += [format_value(collector.duration_seconds) for collector in collectors]
    if len(texts) != 1 + layout.samples + 2 * layout.collectors:
        return False  # not the series of this shape: the caller renders them line by line
    for family, template, pick in layout.families:
        lines[family].append(template % pick(texts))
    return True


def render_agent_fragments(
    record: AgentRecord,
    report: agent_pb2.Report,
    series: ReportSeries | None = None,
    budget: ExportBudget | None = None,
    shape: Shape | None = None,
) -> AgentFragments:
    """Turn one agent's latest report into exposition lines grouped by family; `series` is
    the report's samples as validate_report() returned them, read here when not given. Reported
    samples beyond `budget` (default: ExportBudget's defaults) are left out and counted.
    `shape`: the report's validated shape (report_shapes.py), whose lines are then laid out
    once for every agent of that shape and filled in with this agent's labels and values."""
    prefix = agent_label_prefix(record)
    lines: dict[str, list[str]] = defaultdict(list)
    if budget is None:
        budget = _DEFAULT_BUDGET
    if series is not None and shape is not None:
        layout = _layout_of(shape)
        longest = layout.fixed_bytes + layout.lines * len(prefix) + layout.samples * _MAX_VALUE_TEXT
        if (
            layout.samples <= budget.max_series
            and longest <= budget.max_bytes
            and _render_by_layout(report, series, layout, prefix, lines)
        ):
            return _finish(record, report, prefix, lines, budget, 0, layout.samples)
    if series is None:
        series = report_series(report)
    series_left = budget.max_series
    bytes_left = budget.max_bytes
    dropped = kept = 0
    for collector, samples in zip(report.collectors, series, strict=True):
        # One label after the agent's: no sorting to do.
        collector_labels = f'{{{prefix},collector="{escape_label_value(collector.name)}"}}'
        lines["rmm_agent_collector_success"].append(
            f"rmm_agent_collector_success{collector_labels} {1 if collector.ok else 0}\n"
        )
        lines["rmm_agent_collector_duration_seconds"].append(
            f"rmm_agent_collector_duration_seconds{collector_labels} "
            f"{format_value(collector.duration_seconds)}\n"
        )
        # Cut the report's tail: what is shown is its first series, in the agent's order.
        for name, labels, value in samples:
            if series_left <= 0:
                dropped += 1
                continue
            family = _family_names.get(name) or _family_name(name)
            line = f"{family}{{{prefix}{_label_suffix(labels)}}} {format_value(value)}\n"
            bytes_left -= len(line)
            series_left -= 1
            if bytes_left < 0:
                dropped += 1
                series_left = 0
                continue
            kept += 1
            lines[family].append(line)
    return _finish(record, report, prefix, lines, budget, dropped, kept)


def _finish(
    record: AgentRecord,
    report: agent_pb2.Report,
    prefix: str,
    lines: dict[str, list[str]],
    budget: ExportBudget,
    dropped: int,
    kept: int,
) -> AgentFragments:
    """Add the agent's own series to `lines` and return them as fragments."""
    info = _labels(
        prefix,
        [
            ("hostname", record.hostname),
            ("os", record.os),
            ("os_name", record.os_name),
            ("os_version", record.os_version),
            ("agent_version", record.agent_version),
        ],
    )
    lines["rmm_agent_info"].append(f"rmm_agent_info{info} 1\n")
    lines["rmm_agent_report_interval_seconds"].append(
        f"rmm_agent_report_interval_seconds{{{prefix}}} {record.interval_seconds}\n"
    )
    lines["rmm_agent_reports_dropped_total"].append(
        f"rmm_agent_reports_dropped_total{{{prefix}}} {report.dropped_reports}\n"
    )
    if dropped:
        lines["rmm_agent_exporter_series_dropped"].append(
            f"rmm_agent_exporter_series_dropped{{{prefix}}} {dropped}\n"
        )
    budget.note(record.id, dropped, kept)
    return {family: "".join(family_lines).encode() for family, family_lines in lines.items()}


_DEFAULT_BUDGET = ExportBudget()
