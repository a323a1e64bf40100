"""Test the disks collector: real filesystems only, usage from statvfs, physical I/O devices."""

from __future__ import annotations

import os
from collections import namedtuple
from types import SimpleNamespace

import pytest

from rmm_agent.collectors.disks import DisksCollector, is_pseudo, select_mounts

from .helpers import check_output, value, values

Part = namedtuple("Part", "device mountpoint fstype opts")
Io = namedtuple(
    "Io",
    "read_count write_count read_bytes write_bytes read_time write_time "
    "read_merged_count write_merged_count busy_time",
)
Usage = namedtuple("Usage", "total used free percent")

PARTITIONS = [
    Part("/dev/sda2", "/", "ext4", "rw,relatime"),
    Part("/dev/sda1", "/boot/efi", "vfat", "rw,relatime,fmask=0077"),
    Part("/dev/mapper/vg-data", "/data", "xfs", "ro,relatime"),
    Part("tmpfs", "/run", "tmpfs", "rw,nosuid,nodev"),
    Part("udev", "/dev", "devtmpfs", "rw,nosuid"),
    Part("proc", "/proc", "proc", "rw"),
    Part("sysfs", "/sys", "sysfs", "rw"),
    Part("cgroup2", "/sys/fs/cgroup", "cgroup2", "rw"),
    Part("overlay", "/var/lib/docker/overlay2/abc/merged", "overlay", "rw"),
    Part("/dev/loop3", "/snap/core22/1380", "squashfs", "ro,nodev"),
    Part("nas:/export", "/mnt/nas", "nfs4", "rw"),
    Part("/dev/sdb1", "/media/usb", "exfat", "rw"),
    Part("/dev/sdb1", "/media/usb", "exfat", "rw"),  # mounted twice on the same path
]


def fake_statvfs(path: str) -> os.statvfs_result:
    if path == "/media/usb":
        raise PermissionError(13, "Permission denied", path)
    # bsize frsize blocks bfree bavail files ffree favail flag namemax
    files = 0 if path == "/boot/efi" else 1000  # vfat has no inode table
    return os.statvfs_result((4096, 4096, 1000, 300, 250, files, 400, 400, 0, 255))


def fake_psutil(io: dict[str, Io] | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        disk_partitions=lambda all=False: PARTITIONS,
        disk_io_counters=lambda perdisk=False: io if io is not None else {},
        disk_usage=lambda path: Usage(1000, 600, 300, 66.7),
    )


def test_pseudo_filesystems_are_left_out() -> None:
    kept = [m.mountpoint for m in select_mounts(PARTITIONS)]
    assert kept == ["/", "/boot/efi", "/data", "/media/usb"]
    assert "/mnt/nas" in [m.mountpoint for m in select_mounts(PARTITIONS, include_network=True)]


@pytest.mark.parametrize(
    ("fstype", "mountpoint", "pseudo"),
    [
        ("tmpfs", "/run/user/1000", True),
        ("squashfs", "/snap/x/1", True),
        ("fuse.lxcfs", "/var/lib/lxcfs", True),
        ("ext4", "/dev/shm/odd", True),
        ("ext4", "/home", False),
        ("NTFS", "C:\\", False),
    ],
)
def test_is_pseudo(fstype: str, mountpoint: str, pseudo: bool) -> None:
    assert is_pseudo(fstype, mountpoint) is pseudo


def test_usage_and_inodes_from_statvfs() -> None:
    out = DisksCollector(psutil_module=fake_psutil(), statvfs=fake_statvfs).collect()
    root = {"mountpoint": "/", "device": "/dev/sda2", "fstype": "ext4"}
    assert value(out, "disk_size_bytes", **root) == 1000 * 4096
    assert value(out, "disk_used_bytes", **root) == 700 * 4096
    assert value(out, "disk_free_bytes", **root) == 250 * 4096
    assert value(out, "disk_usage_ratio", **root) == pytest.approx(700 / 950)
    assert value(out, "disk_inodes_usage_ratio", **root) == pytest.approx(0.6)
    assert value(out, "disk_read_only", **root) == 0.0
    data = {"mountpoint": "/data", "device": "/dev/mapper/vg-data", "fstype": "xfs"}
    assert value(out, "disk_read_only", **data) == 1.0
    efi = {"mountpoint": "/boot/efi", "device": "/dev/sda1", "fstype": "vfat"}
    assert (tuple(sorted(efi.items()))) not in values(out, "disk_inodes")
    mounts = {dict(k)["mountpoint"] for k in values(out, "disk_size_bytes")}
    assert mounts == {"/", "/boot/efi", "/data"}
    assert out.info["unreadable"] == [
        {"mountpoint": "/media/usb", "error": "[Errno 13] Permission denied: '/media/usb'"}
    ]
    check_output(DisksCollector, out)


def test_without_statvfs_usage_comes_from_psutil() -> None:
    out = DisksCollector(psutil_module=fake_psutil(), statvfs=None).collect()
    root = {"mountpoint": "/", "device": "/dev/sda2", "fstype": "ext4"}
    assert value(out, "disk_size_bytes", **root) == 1000
    assert value(out, "disk_usage_ratio", **root) == pytest.approx(600 / 900)
    assert values(out, "disk_inodes") == {}
    check_output(DisksCollector, out)


def test_io_counters_of_physical_devices_only() -> None:
    io = Io(10, 20, 4096, 8192, 1500, 2500, 0, 0, 3000)
    devices = [
        "sda",
        "sda1",
        "nvme0n1",
        "nvme0n1p2",
        "loop0",
        "dm-0",
        "zram0",
        "sr0",
        "mmcblk0",
        "mmcblk0p1",
        "md127",
        "vda",
        "xvda1",
        "PhysicalDrive0",
    ]
    out = DisksCollector(
        psutil_module=fake_psutil(dict.fromkeys(devices, io)), statvfs=fake_statvfs
    ).collect()
    seen = {dict(k)["device"] for k in values(out, "disk_read_bytes_total")}
    assert seen == {"sda", "nvme0n1", "mmcblk0", "vda", "PhysicalDrive0"}
    assert value(out, "disk_read_time_seconds_total", device="sda") == 1.5
    assert value(out, "disk_io_time_seconds_total", device="sda") == 3.0
    check_output(DisksCollector, out)


@pytest.mark.linux
def test_real_host_reports_the_root_filesystem() -> None:
    out = DisksCollector().collect()
    mounts = {dict(k)["mountpoint"] for k in values(out, "disk_size_bytes")}
    assert "/" in mounts
    assert not {"/proc", "/sys", "/dev"} & mounts
    check_output(DisksCollector, out)
