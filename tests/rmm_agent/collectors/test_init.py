"""Test the collector registry, the metric catalog and every collector on this host."""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import ClassVar

import pytest

from rmm_agent import collectors
from rmm_agent.collectors import COLLECTORS, Collector, CollectorOutput, catalog
from rmm_common import metric_catalog
from rmm_common.metric_catalog import RESERVED_LABELS, MetricSpec

from .helpers import check_output

UNIT_WORDS = ("bytes", "seconds", "ratio", "celsius", "hertz")
FOREIGN_UNITS = re.compile(r"_(percent|pct|kb|mb|gb|kib|mib|ms|milliseconds|mhz|fahrenheit)(_|$)")


def test_registry_lists_the_eleven_collectors_in_order() -> None:
    names = [c.name for c in COLLECTORS]
    assert names == [
        "cpu",
        "memory",
        "disks",
        "network",
        "sensors",
        "system",
        "processes",
        "services",
        "hardware",
        "software",
        "patches",
    ]


def test_each_collector_lives_in_the_module_named_after_its_key() -> None:
    for collector in COLLECTORS:
        assert collector.__module__ == f"rmm_agent.collectors.{collector.name}"


def test_only_hardware_and_software_are_inventory() -> None:
    assert {c.name for c in COLLECTORS if c.inventory} == {"hardware", "software"}


def test_catalog_has_every_metric_once() -> None:
    specs = catalog()
    declared = [spec.name for c in COLLECTORS for spec in c.metrics]
    assert len(declared) == len(set(declared)) == len(specs)
    assert set(specs) == set(declared)


def test_each_collector_declares_its_entry_of_the_shared_catalogue() -> None:
    # The server checks policies against rmm_common's catalogue: what the agent's collectors
    # declare must be exactly that, collector by collector, in registry order.
    assert [c.name for c in COLLECTORS] == list(metric_catalog.BY_COLLECTOR)
    for collector in COLLECTORS:
        assert collector.metrics == metric_catalog.BY_COLLECTOR[collector.name], collector.name
    assert catalog() == metric_catalog.catalog()


def test_catalog_rejects_a_name_declared_by_two_collectors() -> None:
    class First:
        name: ClassVar[str] = "first"
        inventory: ClassVar[bool] = False
        metrics: ClassVar[tuple[MetricSpec, ...]] = (
            MetricSpec("thing_bytes", "gauge", "A thing."),
        )

        def collect(self) -> CollectorOutput:
            return CollectorOutput()

    class Second(First):
        name: ClassVar[str] = "second"

    with pytest.raises(ValueError, match=r"'thing_bytes'.*'first'.*'second'"):
        catalog((First, Second))


@pytest.mark.parametrize("spec", list(catalog().values()), ids=lambda s: s.name)
def test_metric_names_follow_prometheus_conventions(spec: MetricSpec) -> None:
    assert not spec.name.startswith("rmm_"), "the server adds the rmm_ prefix"
    if spec.kind == "counter":
        assert spec.name.endswith("_total")
    else:
        assert not spec.name.endswith("_total"), "only counters end in _total"
    assert not FOREIGN_UNITS.search(spec.name), "use base units"
    for unit in UNIT_WORDS:
        if unit in spec.name.split("_"):
            assert spec.name.endswith((f"_{unit}", f"_{unit}_total")), f"{unit} must be a suffix"
    assert not set(spec.labels) & RESERVED_LABELS
    assert len(set(spec.labels)) == len(spec.labels)
    assert spec.help and not spec.help[0].islower() and spec.help.endswith(".")


def test_every_module_imports_on_any_os() -> None:
    # Windows and macOS modules must import here: their OS-only imports are lazy.
    for module in pkgutil.iter_modules(collectors.__path__):
        importlib.import_module(f"rmm_agent.collectors.{module.name}")


@pytest.mark.parametrize("collector_class", COLLECTORS, ids=lambda c: c.name)
def test_collector_runs_on_this_host(collector_class: type[Collector]) -> None:
    collector = collector_class()
    for _ in range(2):  # the second run exercises the cached and differential paths
        output = collector.collect()
        assert isinstance(output, CollectorOutput)
        check_output(collector_class, output)
    if output.info.get("available") is False:
        assert output.info["reason"]
        assert not any(s.name.startswith(collector_class.name) for s in output.samples)
