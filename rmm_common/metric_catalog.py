"""The metric catalogue: every series an agent reports, with its kind, labels and help text.

Shared by the agent (each collector declares its tuple from here), the server (the policy loader
checks expressions against it, the exporter takes help texts from it) and tests. Data only: the
collectors that measure these series, and psutil, stay in rmm_agent/collectors/.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

METRIC_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
LABEL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# Labels the server adds to every series; a collector must not use them.
RESERVED_LABELS = frozenset({"client", "site", "agent"})

MetricKind = Literal["gauge", "counter"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """Describe one metric a collector reports (name without the `rmm_` prefix)."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not METRIC_NAME_RE.match(self.name):
            raise ValueError(f"metric name {self.name!r} must match {METRIC_NAME_RE.pattern}")
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")
        for label in self.labels:
            if not LABEL_NAME_RE.match(label) or label in RESERVED_LABELS:
                raise ValueError(f"metric {self.name!r}: label {label!r} is invalid or reserved")


def gauge(name: str, help_text: str, *labels: str) -> MetricSpec:
    """Declare a gauge."""
    return MetricSpec(name, "gauge", help_text, labels)


def counter(name: str, help_text: str, *labels: str) -> MetricSpec:
    """Declare a counter (its name must end in _total)."""
    return MetricSpec(name, "counter", help_text, labels)


_FS_LABELS = ("mountpoint", "device", "fstype")

# One tuple per collector, named after its registry key (rmm_agent/collectors/<key>.py).
CPU: tuple[MetricSpec, ...] = (
    gauge("cpu_usage_ratio", "Fraction of CPU time busy since the last collection."),
    gauge(
        "cpu_core_usage_ratio",
        "Fraction of one core's time busy since the last collection.",
        "core",
    ),
    counter("cpu_seconds_total", "CPU seconds spent in each mode since boot, all cores.", "mode"),
    gauge("cpu_load1", "Load average over 1 minute."),
    gauge("cpu_load5", "Load average over 5 minutes."),
    gauge("cpu_load15", "Load average over 15 minutes."),
    gauge("cpu_frequency_hertz", "Current CPU clock frequency, averaged over cores."),
    gauge("cpu_frequency_max_hertz", "Maximum CPU clock frequency."),
    gauge("cpu_logical_cores", "Number of logical CPUs."),
    gauge("cpu_physical_cores", "Number of physical CPU cores."),
)

MEMORY: tuple[MetricSpec, ...] = (
    gauge("memory_total_bytes", "Physical memory installed and usable by the OS."),
    gauge("memory_available_bytes", "Memory available to start new programs without swapping."),
    gauge("memory_used_bytes", "Memory in use, as the OS reports it."),
    gauge("memory_free_bytes", "Memory not used at all (not even as cache)."),
    gauge("memory_cached_bytes", "Memory used as page cache."),
    gauge("memory_buffers_bytes", "Memory used for block-device buffers."),
    gauge("memory_usage_ratio", "Fraction of memory not available: 1 - available/total."),
    gauge("swap_total_bytes", "Swap space configured."),
    gauge("swap_used_bytes", "Swap space in use."),
    gauge("swap_free_bytes", "Swap space free."),
    gauge("swap_usage_ratio", "Fraction of swap space in use (absent without swap)."),
    counter("swap_in_bytes_total", "Bytes swapped in from disk since boot."),
    counter("swap_out_bytes_total", "Bytes swapped out to disk since boot."),
)

DISKS: tuple[MetricSpec, ...] = (
    gauge("disk_size_bytes", "Size of the filesystem.", *_FS_LABELS),
    gauge("disk_used_bytes", "Space used on the filesystem.", *_FS_LABELS),
    gauge("disk_free_bytes", "Space available to unprivileged users.", *_FS_LABELS),
    gauge("disk_usage_ratio", "Fraction of the filesystem used, as df shows it.", *_FS_LABELS),
    gauge("disk_inodes", "Inodes on the filesystem.", *_FS_LABELS),
    gauge("disk_inodes_free", "Inodes free on the filesystem.", *_FS_LABELS),
    gauge("disk_inodes_usage_ratio", "Fraction of the filesystem's inodes used.", *_FS_LABELS),
    gauge("disk_read_only", "1 if the filesystem is mounted read-only.", *_FS_LABELS),
    counter("disk_read_bytes_total", "Bytes read from the device.", "device"),
    counter("disk_written_bytes_total", "Bytes written to the device.", "device"),
    counter("disk_reads_completed_total", "Reads completed by the device.", "device"),
    counter("disk_writes_completed_total", "Writes completed by the device.", "device"),
    counter("disk_read_time_seconds_total", "Time spent reading.", "device"),
    counter("disk_write_time_seconds_total", "Time spent writing.", "device"),
    counter("disk_io_time_seconds_total", "Time the device was busy doing I/O.", "device"),
)

NETWORK: tuple[MetricSpec, ...] = (
    counter("network_receive_bytes_total", "Bytes received.", "interface"),
    counter("network_transmit_bytes_total", "Bytes sent.", "interface"),
    counter("network_receive_packets_total", "Packets received.", "interface"),
    counter("network_transmit_packets_total", "Packets sent.", "interface"),
    counter("network_receive_errors_total", "Errors while receiving.", "interface"),
    counter("network_transmit_errors_total", "Errors while sending.", "interface"),
    counter("network_receive_drops_total", "Incoming packets dropped.", "interface"),
    counter("network_transmit_drops_total", "Outgoing packets dropped.", "interface"),
    gauge("network_up", "1 if the interface is up.", "interface"),
    gauge("network_speed_bytes", "Link speed in bytes per second, where known.", "interface"),
    gauge("network_mtu_bytes", "Maximum transmission unit.", "interface"),
)

SENSORS: tuple[MetricSpec, ...] = (
    gauge("sensor_temperature_celsius", "Temperature of a sensor.", "chip", "sensor"),
    gauge(
        "sensor_temperature_high_celsius",
        "Temperature the hardware calls high.",
        "chip",
        "sensor",
    ),
    gauge(
        "sensor_temperature_critical_celsius",
        "Temperature the hardware calls critical.",
        "chip",
        "sensor",
    ),
    gauge("sensor_fan_rpm", "Fan speed in revolutions per minute.", "chip", "sensor"),
    gauge("battery_charge_ratio", "Battery charge, 0 to 1."),
    gauge("battery_power_plugged", "1 if on mains power, 0 if on battery."),
    gauge("battery_time_left_seconds", "Estimated time left on battery while discharging."),
    gauge(
        "battery_health_ratio",
        "Full-charge capacity over design capacity; lower means a worn battery.",
        "battery",
    ),
    gauge("battery_cycles", "Charge cycles the battery has been through.", "battery"),
)

SYSTEM: tuple[MetricSpec, ...] = (
    gauge("system_boot_time_seconds", "Unix time the host booted."),
    gauge("system_uptime_seconds", "Seconds since the host booted."),
    gauge("system_users", "Logged-in user sessions."),
    gauge("system_reboot_required", "1 if installed updates wait for a reboot."),
    gauge(
        "system_reboot_required_time_seconds",
        "Unix time the pending reboot was first flagged.",
    ),
)

PROCESSES: tuple[MetricSpec, ...] = (
    gauge("processes", "Number of processes."),
    gauge("processes_by_status", "Number of processes in each status.", "status"),
    gauge("processes_threads", "Number of threads in all processes."),
)

SERVICES: tuple[MetricSpec, ...] = (
    gauge("services_by_state", "Number of services in each active state.", "state"),
    gauge("service_failed", "1 for each service unit in the failed state.", "unit"),
)

HARDWARE: tuple[MetricSpec, ...] = (
    gauge("hardware_disk_size_bytes", "Size of a physical disk.", "device"),
)

SOFTWARE: tuple[MetricSpec, ...] = (
    gauge("software_packages", "Number of installed packages.", "backend"),
)

PATCHES: tuple[MetricSpec, ...] = (
    gauge("patches_pending", "Number of updates available to install.", "classification"),
    gauge(
        "patches_pending_oldest_age_seconds",
        "Seconds since the oldest pending update was published, where the OS tells.",
    ),
    gauge(
        "patches_lists_age_seconds",
        "Seconds since the host last refreshed its update metadata.",
    ),
)

# By collector key, in the agent's registry order.
BY_COLLECTOR: Mapping[str, tuple[MetricSpec, ...]] = {
    "cpu": CPU,
    "memory": MEMORY,
    "disks": DISKS,
    "network": NETWORK,
    "sensors": SENSORS,
    "system": SYSTEM,
    "processes": PROCESSES,
    "services": SERVICES,
    "hardware": HARDWARE,
    "software": SOFTWARE,
    "patches": PATCHES,
}


def merge(groups: Mapping[str, tuple[MetricSpec, ...]]) -> dict[str, MetricSpec]:
    """Return the specs of every group by metric name; raise ValueError on a duplicate."""
    specs: dict[str, MetricSpec] = {}
    owners: dict[str, str] = {}
    for owner, group in groups.items():
        for spec in group:
            if spec.name in specs:
                raise ValueError(
                    f"metric {spec.name!r} declared by both collector {owners[spec.name]!r} "
                    f"and collector {owner!r}"
                )
            specs[spec.name] = spec
            owners[spec.name] = owner
    return specs


def catalog() -> dict[str, MetricSpec]:
    """Return every metric an agent reports, by name (without the `rmm_` prefix)."""
    return merge(BY_COLLECTOR)
