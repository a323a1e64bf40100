"""Collect filesystem usage, inodes and per-device disk I/O counters."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import psutil

from rmm_agent.collectors._common import PsutilModule
from rmm_agent.collectors.base import CollectorOutput, Sample
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec

log = logging.getLogger(__name__)

# Filesystems that hold no user data: kernel interfaces, memory-backed and image mounts.
PSEUDO_FSTYPES = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs",
        "devpts", "devtmpfs", "efivarfs", "fusectl", "fuse.gvfsd-fuse", "fuse.lxcfs",
        "fuse.portal", "fuse.snapfuse", "hugetlbfs", "mqueue", "nsfs", "nullfs", "overlay",
        "proc", "procfs", "pstore", "ramfs", "rpc_pipefs", "securityfs", "selinuxfs",
        "squashfs", "sysfs", "tmpfs", "tracefs", "aufs", "iso9660", "udf",
    }
)  # fmt: skip
# Network filesystems: a hung server makes statvfs() block, which would stall the whole
# collection cycle, so they are left out unless asked for.
NETWORK_FSTYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "ceph", "glusterfs", "afs"}
)
PSEUDO_MOUNT_PREFIXES = ("/proc/", "/sys/", "/dev/", "/snap/")
PSEUDO_MOUNTS = frozenset({"/proc", "/sys", "/dev"})

# Partitions, RAM disks, loop devices, floppies, optical drives and device-mapper or md
# volumes: their I/O is also counted on the physical disk beneath them (as node_exporter does).
DEFAULT_IO_EXCLUDE = (
    r"^(z?ram\d+|loop\d+|fd\d+|sr\d+|dm-\d+|md\d+|"
    r"(h|s|v|xv)d[a-z]+\d+|nvme\d+n\d+p\d+|mmcblk\d+p\d+)$"
)

StatVfs = Callable[[str], os.statvfs_result]


@dataclass(frozen=True, slots=True)
class Mount:
    """One mounted filesystem worth reporting."""

    device: str
    mountpoint: str
    fstype: str
    read_only: bool


def is_pseudo(fstype: str, mountpoint: str) -> bool:
    """Tell whether a mount is a pseudo filesystem holding no user data."""
    if fstype.lower() in PSEUDO_FSTYPES:
        return True
    return mountpoint in PSEUDO_MOUNTS or mountpoint.startswith(PSEUDO_MOUNT_PREFIXES)


def select_mounts(partitions: Iterable[Any], *, include_network: bool = False) -> list[Mount]:
    """Keep the real filesystems of psutil.disk_partitions(), one per mountpoint."""
    by_mountpoint: dict[str, Mount] = {}
    for part in partitions:
        fstype = str(part.fstype)
        if not fstype or is_pseudo(fstype, part.mountpoint):
            continue
        if not include_network and fstype.lower() in NETWORK_FSTYPES:
            continue
        opts = str(part.opts).split(",")
        # A later mount on the same path hides the earlier one: the last one is what users see.
        by_mountpoint[part.mountpoint] = Mount(part.device, part.mountpoint, fstype, "ro" in opts)
    return sorted(by_mountpoint.values(), key=lambda m: m.mountpoint)


class DisksCollector:
    """Report usage of each real filesystem and I/O counters of each physical disk."""

    name: ClassVar[str] = "disks"
    inventory: ClassVar[bool] = False
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.DISKS

    def __init__(
        self,
        *,
        psutil_module: PsutilModule = psutil,
        statvfs: StatVfs | None = getattr(os, "statvfs", None),  # noqa: B008 - absent on Windows
        include_network: bool = False,
        io_exclude: str = DEFAULT_IO_EXCLUDE,
    ) -> None:
        self._psutil = psutil_module
        self._statvfs = statvfs
        self._include_network = include_network
        self._io_exclude = re.compile(io_exclude)

    def collect(self) -> CollectorOutput:
        """Read usage of every real mount and I/O counters of every physical device."""
        mounts = select_mounts(
            self._psutil.disk_partitions(all=False), include_network=self._include_network
        )
        samples: list[Sample] = []
        unreadable: list[dict[str, str]] = []
        for mount in mounts:
            try:
                samples.extend(self._usage(mount))
            except OSError as exc:
                # A removable drive without media, a mount that just went away, a directory we
                # may not enter: the other filesystems are still worth reporting.
                log.debug("disks: cannot stat %s: %s", mount.mountpoint, exc)
                unreadable.append({"mountpoint": mount.mountpoint, "error": str(exc)})
        samples.extend(self._io())
        info: dict[str, Any] = {
            "filesystems": [
                {"mountpoint": m.mountpoint, "device": m.device, "fstype": m.fstype} for m in mounts
            ]
        }
        if unreadable:
            info["unreadable"] = unreadable
        return CollectorOutput(samples=samples, info=info)

    def _usage(self, mount: Mount) -> list[Sample]:
        """Return the usage samples of one mount."""
        labels = {"mountpoint": mount.mountpoint, "device": mount.device, "fstype": mount.fstype}
        values: dict[str, float] = {"disk_read_only": 1.0 if mount.read_only else 0.0}
        if self._statvfs is None:
            usage = self._psutil.disk_usage(mount.mountpoint)
            size, used, free = float(usage.total), float(usage.used), float(usage.free)
        else:
            st = self._statvfs(mount.mountpoint)
            size = float(st.f_blocks * st.f_frsize)
            used = float((st.f_blocks - st.f_bfree) * st.f_frsize)
            free = float(st.f_bavail * st.f_frsize)
            # Some filesystems (vfat, btrfs) have no fixed inode table and report 0 inodes.
            if st.f_files > 0:
                values["disk_inodes"] = float(st.f_files)
                values["disk_inodes_free"] = float(st.f_ffree)
                values["disk_inodes_usage_ratio"] = (st.f_files - st.f_ffree) / st.f_files
        values["disk_size_bytes"] = size
        values["disk_used_bytes"] = used
        values["disk_free_bytes"] = free
        # Like df: the root-reserved blocks count neither as used nor as available.
        if used + free > 0:
            values["disk_usage_ratio"] = used / (used + free)
        return [Sample(name, value, dict(labels)) for name, value in values.items()]

    def _io(self) -> list[Sample]:
        """Return I/O counter samples of physical devices."""
        counters = self._psutil.disk_io_counters(perdisk=True) or {}
        samples: list[Sample] = []
        for device, io in sorted(counters.items()):
            if self._io_exclude.match(device):
                continue
            labels = {"device": device}
            values = {
                "disk_read_bytes_total": float(io.read_bytes),
                "disk_written_bytes_total": float(io.write_bytes),
                "disk_reads_completed_total": float(io.read_count),
                "disk_writes_completed_total": float(io.write_count),
                "disk_read_time_seconds_total": io.read_time / 1000.0,
                "disk_write_time_seconds_total": io.write_time / 1000.0,
            }
            # busy_time exists on Linux and FreeBSD only.
            busy_ms = getattr(io, "busy_time", None)
            if busy_ms is not None:
                values["disk_io_time_seconds_total"] = busy_ms / 1000.0
            samples.extend(Sample(name, value, dict(labels)) for name, value in values.items())
        return samples
