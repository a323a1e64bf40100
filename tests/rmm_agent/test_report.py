"""A report is built from every collector; one that fails or hangs is named and the rest go on."""

from __future__ import annotations

import json
import threading
import time
from typing import ClassVar

from rmm_agent.collectors import CollectorOutput, Sample
from rmm_agent.report import ReportBuilder, report_to_dict
from rmm_common.metric_catalog import MetricSpec


class Fine:
    name: ClassVar[str] = "fine"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("fine_value", "gauge", "A value."),)
    inventory: ClassVar[bool] = False

    def collect(self) -> CollectorOutput:
        return CollectorOutput([Sample("fine_value", 42.0)], {"note": "ok"})


class Broken:
    name: ClassVar[str] = "broken"
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    inventory: ClassVar[bool] = False

    def collect(self) -> CollectorOutput:
        raise OSError("sensor bus on fire")


class Hanging:
    name: ClassVar[str] = "hanging"
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    inventory: ClassVar[bool] = False

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def collect(self) -> CollectorOutput:
        self.calls += 1
        self.release.wait(10)
        return CollectorOutput()


class Packages:
    name: ClassVar[str] = "software"
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    inventory: ClassVar[bool] = True

    def __init__(self) -> None:
        self.packages = ["bash"]
        self.calls = 0

    def collect(self) -> CollectorOutput:
        self.calls += 1
        return CollectorOutput([], {"packages": list(self.packages)})


def test_failing_and_hanging_collectors_do_not_stop_the_report() -> None:
    hanging = Hanging()
    builder = ReportBuilder([Fine(), Broken(), hanging], timeout_seconds=0.3)
    try:
        report = builder.build()
        by_name = {c.name: c for c in report.collectors}
        assert by_name["fine"].ok and by_name["fine"].samples[0].value == 42.0
        assert json.loads(by_name["fine"].info_json) == {"note": "ok"}
        assert not by_name["broken"].ok
        assert "sensor bus on fire" in by_name["broken"].error
        assert not by_name["hanging"].ok and "timed out after 0.3s" in by_name["hanging"].error
        # Still hung at the next report: not started a second time, named as still running.
        again = {c.name: c for c in builder.build().collectors}
        assert "still running" in again["hanging"].error and hanging.calls == 1
        assert again["fine"].ok
    finally:
        hanging.release.set()
        builder.close()


def test_inventory_is_read_on_its_own_interval_and_hashed() -> None:
    now = [0.0]
    packages = Packages()
    builder = ReportBuilder(
        [Fine(), packages], inventory_interval_seconds=60, monotonic=lambda: now[0]
    )
    try:
        first = builder.build()
        first_hash = first.inventory_hash
        assert len(first_hash) == 64 and packages.calls == 1
        now[0] = 30
        assert builder.build().inventory_hash == first_hash and packages.calls == 1
        packages.packages.append("nginx")
        now[0] = 61
        changed = builder.build()
        assert packages.calls == 2 and changed.inventory_hash != first_hash
        assert [c.duration_seconds > 0 for c in changed.collectors if c.name == "software"] == [
            True
        ]
        cached = builder.build()
        assert [c.duration_seconds for c in cached.collectors if c.name == "software"] == [0.0]
        builder.attach_inventory(changed)
        assert json.loads(changed.inventory.json) == {"software": {"packages": ["bash", "nginx"]}}
        data = report_to_dict(changed, builder.inventory_json)
        assert data["inventory"]["software"]["packages"] == ["bash", "nginx"]
    finally:
        builder.close()


class Slow:
    name: ClassVar[str] = "slow"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("slow_value", "gauge", "A value."),)
    inventory: ClassVar[bool] = False
    slow: ClassVar[bool] = True

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def collect(self) -> CollectorOutput:
        self.calls += 1
        self.release.wait(10)
        return CollectorOutput([Sample("slow_value", float(self.calls))])


def test_a_slow_collector_never_holds_a_report() -> None:
    slow = Slow()
    builder = ReportBuilder([Fine(), slow], timeout_seconds=5)
    try:
        first = builder.build()
        assert [c.name for c in first.collectors] == ["fine"], "no finished reading yet"
        slow.release.set()
        deadline = time.monotonic() + 5
        while True:
            names = {c.name: c for c in builder.build().collectors}
            if "slow" in names or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert names["slow"].ok and names["slow"].samples[0].value >= 1
    finally:
        slow.release.set()
        builder.close()
    waiting = ReportBuilder([Fine(), Slow()], timeout_seconds=5, wait_for_slow=True)
    try:
        waiting.collectors[1].release.set()  # type: ignore[attr-defined]
        assert {c.name for c in waiting.build().collectors} == {"fine", "slow"}
    finally:
        waiting.close()


class Odd:
    name: ClassVar[str] = "odd"
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    inventory: ClassVar[bool] = False

    def collect(self) -> CollectorOutput:
        return CollectorOutput(
            [
                Sample("odd_value", float("nan")),
                Sample("odd_value", 1.5, {"mount": "/", "fs": "ext4"}),
                Sample("odd_value", float("inf"), {"mount": "/boot"}),
                Sample("odd_value", -0.25, {"mount": "/srv"}),
            ]
        )


def test_samples_keep_their_labels_and_values_and_non_finite_ones_are_left_out() -> None:
    builder = ReportBuilder([Odd()])
    try:
        (odd,) = builder.build().collectors
        assert [(s.name, dict(s.labels), s.value) for s in odd.samples] == [
            ("odd_value", {"mount": "/", "fs": "ext4"}, 1.5),
            ("odd_value", {"mount": "/srv"}, -0.25),
        ]
    finally:
        builder.close()


class Pausing:
    """A collector that takes `pause` seconds and notes the thread it ran on."""

    name: ClassVar[str] = "pausing"
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    inventory: ClassVar[bool] = False

    def __init__(self, pause: float, threads: list[str]) -> None:
        self.pause = pause
        self.threads = threads

    def collect(self) -> CollectorOutput:
        self.threads.append(threading.current_thread().name)
        time.sleep(self.pause)
        return CollectorOutput()


def pausing(name: str, pause: float, threads: list[str]) -> Pausing:
    """A Pausing collector registered as `name`."""
    named: type[Pausing] = type(f"Pausing_{name}", (Pausing,), {"name": name})
    return named(pause, threads)


def test_one_worker_takes_a_whole_cycle() -> None:
    """One hand-off a cycle, not one a collector: each of these would hold a worker of its own
    while it sleeps, had each its own hand-off."""
    threads: list[str] = []
    builder = ReportBuilder([pausing(f"p{i}", 0.02, threads) for i in range(3)])
    try:
        report = builder.build()
        assert [c.ok for c in report.collectors] == [True] * 3
        assert len(threads) == 3 and len(set(threads)) == 1, threads
        assert threads[0] != threading.current_thread().name
    finally:
        builder.close()


def test_a_hung_collector_holds_the_others_only_a_moment() -> None:
    """Hung first in its cycle: another worker takes the rest, which make the report."""
    hanging = Hanging()
    threads: list[str] = []
    builder = ReportBuilder([hanging, Fine(), pausing("after", 0.0, threads)], timeout_seconds=1)
    try:
        started = time.monotonic()
        by_name = {c.name: c for c in builder.build().collectors}
        assert time.monotonic() - started < 3
        assert "timed out after 1s" in by_name["hanging"].error
        assert by_name["fine"].ok and by_name["after"].ok and threads
        again = {c.name: c for c in builder.build().collectors}
        assert "still running" in again["hanging"].error and hanging.calls == 1
        assert again["fine"].ok and again["after"].ok
    finally:
        hanging.release.set()
        builder.close()


class Spaced:
    """A collector read at most every 5 s; fails while `failing` is set."""

    name: ClassVar[str] = "spaced"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (MetricSpec("spaced_value", "gauge", "A value."),)
    inventory: ClassVar[bool] = False
    min_interval_seconds: ClassVar[float] = 5.0

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False

    def collect(self) -> CollectorOutput:
        self.calls += 1
        if self.failing:
            raise OSError("not now")
        return CollectorOutput([Sample("spaced_value", float(self.calls))], {"call": self.calls})


def test_a_collector_with_a_minimum_interval_repeats_its_last_good_reading_until_due() -> None:
    now = [0.0]
    spaced, fine = Spaced(), Fine()
    builder = ReportBuilder([spaced, fine], monotonic=lambda: now[0])
    try:

        def reading() -> tuple[float, float, str]:
            by_name = {c.name: c for c in builder.build().collectors}
            assert by_name["fine"].ok, "the others run every time"
            result = by_name["spaced"]
            return result.samples[0].value, result.duration_seconds, result.info_json.decode()

        value, duration, info = reading()
        assert (value, info, spaced.calls) == (1.0, '{"call":1}', 1) and duration > 0
        now[0] = 4.0
        assert reading() == (1.0, 0.0, '{"call":1}') and spaced.calls == 1
        now[0] = 4.99  # due, give or take the schedule's jitter
        assert reading()[0] == 2.0 and spaced.calls == 2
        spaced.failing = True
        now[0] = 10.0
        failed = {c.name: c for c in builder.build().collectors}["spaced"]
        assert not failed.ok and "not now" in failed.error
        now[0] = 11.0  # a failure is not repeated: read again at once
        spaced.failing = False
        assert reading()[0] == 4.0 and spaced.calls == 4
    finally:
        builder.close()


class SpacedSlow(Slow):
    name: ClassVar[str] = "spaced_slow"
    min_interval_seconds: ClassVar[float] = 5.0


def test_a_slow_collector_with_a_minimum_interval_is_started_only_when_due() -> None:
    now = [0.0]
    slow = SpacedSlow()
    slow.release.set()
    builder = ReportBuilder([Fine(), slow], monotonic=lambda: now[0])
    try:

        def settled() -> dict[str, float]:
            """Build once, wait for the background reading, return what a report then shows."""
            builder.build()
            deadline = time.monotonic() + 5
            while builder._claimed and time.monotonic() < deadline:  # the reading is on its way
                time.sleep(0.01)
            return {c.name: c.samples[0].value for c in builder.build().collectors}

        assert settled()["spaced_slow"] == 1.0 and slow.calls == 1
        now[0] = 3.0
        assert settled()["spaced_slow"] == 1.0 and slow.calls == 1, "not due: not started"
        now[0] = 6.0
        assert settled()["spaced_slow"] == 2.0 and slow.calls == 2
    finally:
        builder.close()
