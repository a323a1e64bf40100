"""Collect temperatures, fan speeds, battery charge and battery wear."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import psutil

from rmm_agent.collectors._common import Clock, PsutilModule, is_finite, unique_label
from rmm_agent.collectors.base import CollectorOutput, Sample
from rmm_agent.collectors.sensors_linux import read_battery_health
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec

log = logging.getLogger(__name__)

# A host with no sensors at all (nearly every VM and container) is looked at again this often,
# not every cycle: psutil globs /sys/class/hwmon and thermal zones each time, 70 us of CPU a
# cycle for nothing (measured in a container: 1 us with this). A sensor that appears later (a
# USB device, a driver loaded) is reported within this time.
EMPTY_RESCAN_SECONDS = 600.0


class SensorsCollector:
    """Report the hardware sensors this host has; hosts without any report none."""

    name: ClassVar[str] = "sensors"
    inventory: ClassVar[bool] = False
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.SENSORS

    def __init__(
        self,
        *,
        psutil_module: PsutilModule = psutil,
        sys_root: Path = Path("/sys"),
        platform: str = sys.platform,
        clock: Clock = time.monotonic,
        empty_rescan_seconds: float = EMPTY_RESCAN_SECONDS,
    ) -> None:
        self._psutil = psutil_module
        self._sys_root = sys_root
        self._platform = platform
        self._clock = clock
        self._empty_rescan = empty_rescan_seconds
        # When the host last showed no sensor at all (monotonic seconds), else None.
        self._empty_since: float | None = None

    def collect(self) -> CollectorOutput:
        """Read temperature, fan and battery sensors where the host has them."""
        now = self._clock()
        if self._empty_since is not None and now - self._empty_since < self._empty_rescan:
            return _no_sensors()
        samples = self._temperatures() + self._fans() + self._battery()
        info: dict[str, Any] = {}
        if self._platform.startswith("linux"):
            batteries = read_battery_health(self._sys_root)
            for bat in batteries:
                labels = {"battery": bat.name}
                if bat.health_ratio is not None:
                    samples.append(Sample("battery_health_ratio", bat.health_ratio, labels))
                if bat.cycle_count is not None:
                    samples.append(Sample("battery_cycles", float(bat.cycle_count), dict(labels)))
            if batteries:
                info["batteries"] = {bat.name: bat.details for bat in batteries}
        # Only a host with nothing at all (no battery directory either) waits for the rescan.
        self._empty_since = None if samples or info else now
        if not samples:
            log.debug("sensors: no temperature, fan or battery sensors on this host")
            info.update(_no_sensors().info)
        return CollectorOutput(samples=samples, info=info)

    def _temperatures(self) -> list[Sample]:
        """Return temperature samples; psutil has none on Windows and macOS."""
        read = getattr(self._psutil, "sensors_temperatures", None)
        if read is None:
            return []
        samples: list[Sample] = []
        seen: set[tuple[str, ...]] = set()
        for chip, entries in sorted(read().items()):
            for index, entry in enumerate(entries, start=1):
                # Unlabelled inputs and chips of the same name (two NVMe drives) would collide.
                chip_name, sensor = unique_label(seen, (chip, entry.label or f"temp{index}"))
                labels = {"chip": chip_name, "sensor": sensor}
                for metric, value in (
                    ("sensor_temperature_celsius", entry.current),
                    ("sensor_temperature_high_celsius", entry.high),
                    ("sensor_temperature_critical_celsius", entry.critical),
                ):
                    # Drivers report absent thresholds as None or 0.
                    if value and is_finite(value):
                        samples.append(Sample(metric, float(value), dict(labels)))
        return samples

    def _fans(self) -> list[Sample]:
        """Return fan speed samples; psutil has them on Linux only."""
        read = getattr(self._psutil, "sensors_fans", None)
        if read is None:
            return []
        samples: list[Sample] = []
        seen: set[tuple[str, ...]] = set()
        for chip, entries in sorted(read().items()):
            for index, entry in enumerate(entries, start=1):
                chip_name, sensor = unique_label(seen, (chip, entry.label or f"fan{index}"))
                labels = {"chip": chip_name, "sensor": sensor}
                samples.append(Sample("sensor_fan_rpm", float(entry.current), labels))
        return samples

    def _battery(self) -> list[Sample]:
        """Return charge, plug and time-left samples of the (combined) battery."""
        read = getattr(self._psutil, "sensors_battery", None)
        battery = read() if read is not None else None
        if battery is None:
            return []
        samples = [Sample("battery_charge_ratio", float(battery.percent) / 100.0)]
        if battery.power_plugged is not None:
            samples.append(Sample("battery_power_plugged", 1.0 if battery.power_plugged else 0.0))
        # Negative values are psutil's POWER_TIME_UNKNOWN and POWER_TIME_UNLIMITED.
        if battery.secsleft is not None and battery.secsleft >= 0 and not battery.power_plugged:
            samples.append(Sample("battery_time_left_seconds", float(battery.secsleft)))
        return samples


def _no_sensors() -> CollectorOutput:
    return CollectorOutput(
        info={"available": False, "reason": "no temperature, fan or battery sensors found"}
    )
