"""The agent's collectors: one module per concern, registered in COLLECTORS."""

from __future__ import annotations

from rmm_agent.collectors.base import (
    Collector,
    CollectorOutput,
    CommandError,
    Sample,
    run_command,
)
from rmm_agent.collectors.cpu import CpuCollector
from rmm_agent.collectors.disks import DisksCollector
from rmm_agent.collectors.hardware import HardwareCollector
from rmm_agent.collectors.memory import MemoryCollector
from rmm_agent.collectors.network import NetworkCollector
from rmm_agent.collectors.patches import PatchesCollector
from rmm_agent.collectors.processes import ProcessesCollector
from rmm_agent.collectors.sensors import SensorsCollector
from rmm_agent.collectors.services import ServicesCollector
from rmm_agent.collectors.software import SoftwareCollector
from rmm_agent.collectors.system import SystemCollector
from rmm_common.metric_catalog import MetricSpec, merge

__all__ = [
    "COLLECTORS",
    "Collector",
    "CollectorOutput",
    "CommandError",
    "Sample",
    "catalog",
    "run_command",
]

COLLECTORS: tuple[type[Collector], ...] = (
    CpuCollector,
    MemoryCollector,
    DisksCollector,
    NetworkCollector,
    SensorsCollector,
    SystemCollector,
    ProcessesCollector,
    ServicesCollector,
    HardwareCollector,
    SoftwareCollector,
    PatchesCollector,
)


def catalog(collectors: tuple[type[Collector], ...] = COLLECTORS) -> dict[str, MetricSpec]:
    """Return every metric of every collector by name; raise ValueError on a duplicate."""
    return merge({collector.name: collector.metrics for collector in collectors})
