"""A report of a known shape renders from its shape's layout exactly as line by line: same
families in the same order, same lines, same budget outcome. Random shapes and values (label
text with quotes, backslashes, line breaks and percent signs; NaN, infinities, integers), the
real collectors' report, a report whose series do not fit the shape, and the budget's edges."""

from __future__ import annotations

import math
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_agent.cli import make_collectors
from rmm_agent.report import ReportBuilder
from rmm_proto import agent_pb2, common_pb2
from rmm_server import exposition
from rmm_server.exposition import ExportBudget, render_agent_fragments
from rmm_server.report_shapes import ReportShapes
from rmm_server.storage import AgentRecord

RECORD = AgentRecord(
    id="agent-1",
    credential_hash="h",
    client='ac"me 100%',
    site="h\\q",
    enrolled_at=0,
    hostname="host%s-1",
    interval_seconds=30,
)

label_text = st.text(alphabet='ab%s"\\\n=,{} é', max_size=12)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**60), max_value=2**60).map(float),
    st.sampled_from([0.0, 1.0, -0.0, 1e15, 1e16, 0.1]),
)
samples = st.lists(
    st.tuples(
        st.sampled_from(["cpu_ratio", "disk_used_bytes", "x_total", "temp_celsius"]),
        st.dictionaries(st.sampled_from(["mount", "device", "core", "le"]), label_text, max_size=3),
        values,
    ),
    max_size=12,
)
collectors = st.lists(
    st.tuples(
        st.sampled_from(["cpu", "disks", "memory%", 'odd"name']),
        st.booleans(),
        st.floats(min_value=0, max_value=5),
        samples,
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda c: c[0],
)


def build(spec: list[tuple[str, bool, float, list[tuple[str, dict[str, str], float]]]]) -> bytes:
    report = agent_pb2.Report(sequence=1, collected_at=time.time(), interval_seconds=30)
    for name, ok, duration, entries in spec:
        result = report.collectors.add(name=name, ok=ok, duration_seconds=duration)
        for sample_name, labels, value in entries:
            result.samples.append(common_pb2.Sample(name=sample_name, value=value, labels=labels))
    return report.SerializeToString()


def both_ways(
    raw: bytes, budget: ExportBudget | None = None, laid_out: bool = True
) -> tuple[object, object]:
    """Render a freshly decoded report by its shape's layout and line by line; `laid_out`:
    whether the layout must have been used (not a fall-back to line by line)."""
    shapes = ReportShapes()
    report = agent_pb2.Report.FromString(raw)
    series = shapes.validate(RECORD.id, report, raw)
    shape = shapes.shape_of(RECORD.id)
    assert shape is not None
    used: list[bool] = []
    by_layout_call = exposition._render_by_layout

    def noting(*args: Any) -> bool:
        used.append(by_layout_call(*args))
        return used[-1]

    exposition._render_by_layout = noting  # type: ignore[assignment]
    try:
        by_layout = render_agent_fragments(RECORD, report, series, budget, shape)
    finally:
        exposition._render_by_layout = by_layout_call
    if laid_out:
        assert used == [True], "the layout was not used"
    by_line = render_agent_fragments(RECORD, report, series, budget)
    return list(by_layout.items()), list(by_line.items())


@settings(max_examples=300, deadline=None)
@given(collectors)
def test_random_shapes_render_the_same_both_ways(spec: list) -> None:  # type: ignore[type-arg]
    raw = build(spec)
    try:
        by_layout, by_line = both_ways(raw)
    except Exception as error:  # a report validation refuses is not rendered at all
        assert type(error).__name__ == "InvalidArgument", error
        return
    assert by_layout == by_line


def test_a_real_report_renders_the_same_both_ways_and_values_change_in_place() -> None:
    builder = ReportBuilder(make_collectors([]))
    try:
        builder.build()
        report = builder.build()
    finally:
        builder.close()
    report.ClearField("inventory")
    report.sequence = 1
    raw = report.SerializeToString()
    by_layout, by_line = both_ways(raw)
    assert by_layout == by_line
    # A second report of the same shape with other values: the layout is reused.
    for collector in report.collectors:
        for sample in collector.samples:
            sample.value = -sample.value if math.isfinite(sample.value) else 0.5
    by_layout, by_line = both_ways(report.SerializeToString())
    assert by_layout == by_line


def test_series_not_of_the_shape_are_rendered_line_by_line() -> None:
    raw = build([("disks", True, 0.1, [("disk_used_bytes", {"mount": "/"}, 1.0)])])
    other = build(
        [("disks", True, 0.1, [("disk_used_bytes", {"mount": "/"}, 1.0), ("x_total", {}, 2.0)])]
    )
    shapes = ReportShapes()
    report = agent_pb2.Report.FromString(raw)
    shapes.validate(RECORD.id, report, raw)
    shape = shapes.shape_of(RECORD.id)
    mismatched = agent_pb2.Report.FromString(other)
    series = ReportShapes().validate("another", mismatched, other)
    rendered = render_agent_fragments(RECORD, mismatched, series, None, shape)
    assert rendered == render_agent_fragments(RECORD, mismatched, series)
    assert b"x_total" in rendered["rmm_x_total"]


def test_at_the_budgets_edges_the_cut_is_the_same_both_ways() -> None:
    entries = [("disk_used_bytes", {"mount": f"/m{n}"}, float(n)) for n in range(50)]
    raw = build([("disks", True, 0.1, entries)])
    for budget in (
        ExportBudget(max_series=50),
        ExportBudget(max_bytes=200_000),
    ):
        by_layout, by_line = both_ways(raw, budget)
        assert by_layout == by_line, budget.__dict__
    for budget in (
        ExportBudget(max_series=49),
        ExportBudget(max_series=10),
        ExportBudget(max_bytes=3000),
    ):
        by_layout, by_line = both_ways(raw, budget, laid_out=False)
        assert by_layout == by_line, budget.__dict__
