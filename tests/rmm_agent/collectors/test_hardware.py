"""Test the hardware inventory collector with fakes passed through its constructor."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest

from rmm_agent.collectors.hardware import SYSTEM_KEYS, HardwareCollector

from .fake_winreg import FakeWinreg, load_reg
from .helpers import FakeClock, check_output, fixture_path, fixture_text, value, write_tree

Addr = namedtuple("Addr", "family address netmask broadcast ptp")
Vm = namedtuple("Vm", "total available")
AF_LINK = 17


def fake_psutil() -> SimpleNamespace:
    addrs = {
        "lo": [Addr(AF_LINK, "00:00:00:00:00:00", None, None, None)],
        "eth0": [Addr(AF_LINK, "3c:7c:3f:aa:bb:cc", None, None, None)],
        "docker0": [Addr(AF_LINK, "02:42:ac:11:00:01", None, None, None)],
        "wg0": [Addr(2, "10.8.0.2", "255.255.255.0", None, None)],
    }
    return SimpleNamespace(
        cpu_count=lambda logical=True: 8 if logical else 4,
        virtual_memory=lambda: Vm(16 * 2**30, 8 * 2**30),
        net_if_addrs=lambda: addrs,
        AF_LINK=AF_LINK,
    )


def linux_tree(tmp_path: Path) -> tuple[Path, Path]:
    write_tree(
        tmp_path,
        {
            "proc/cpuinfo": fixture_text("cpuinfo_x86_64_debian12.txt"),
            "sys/class/dmi/id/sys_vendor": "Dell Inc.\n",
            "sys/class/dmi/id/product_name": "PowerEdge R650\n",
            "sys/block/sda/size": "1000\n",
            "sys/block/sda/device/model": "PERC H755\n",
            "sys/class/net/eth0/device/uevent": "DRIVER=tg3\n",
        },
    )
    return tmp_path / "sys", tmp_path / "proc"


def test_linux_inventory(tmp_path: Path) -> None:
    sys_root, proc_root = linux_tree(tmp_path)
    out = HardwareCollector(
        psutil_module=fake_psutil(), sys_root=sys_root, proc_root=proc_root, platform="linux"
    ).collect()
    info = out.info
    assert info["cpu"] == {
        "model": "AMD EPYC",
        "vendor": "AuthenticAMD",
        "sockets": 1,
        "physical_cores": 4,
        "logical_cores": 8,
    }
    assert info["memory"] == {"total_bytes": 16 * 2**30}
    assert info["nics"] == [{"name": "eth0", "mac": "3c:7c:3f:aa:bb:cc"}]
    assert info["system"]["model"] == "PowerEdge R650"
    assert info["system"]["serial"] is None
    assert tuple(info["system"]) == SYSTEM_KEYS
    assert [d["model"] for d in info["disks"]] == ["PERC H755"]
    assert value(out, "hardware_disk_size_bytes", device="sda") == 512_000
    check_output(HardwareCollector, out)


def test_inventory_is_reread_only_after_refresh_seconds(tmp_path: Path) -> None:
    sys_root, proc_root = linux_tree(tmp_path)
    clock = FakeClock()
    collector = HardwareCollector(
        psutil_module=fake_psutil(),
        sys_root=sys_root,
        proc_root=proc_root,
        platform="linux",
        clock=clock,
        refresh_seconds=3600,
    )
    first = collector.collect()
    (sys_root / "block/sda/device/model").write_text("PERC H965\n")
    clock.advance(3599)
    assert collector.collect().info == first.info
    clock.advance(1)
    assert collector.collect().info["disks"][0]["model"] == "PERC H965"


def test_windows_inventory_has_the_same_keys() -> None:
    reg = FakeWinreg(load_reg(fixture_path("windows_system.reg")))
    out = HardwareCollector(
        psutil_module=fake_psutil(), platform="win32", winreg_module=reg
    ).collect()
    assert out.info["cpu"]["model"] == "11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz"
    assert tuple(out.info["system"]) == SYSTEM_KEYS
    assert out.info["system"]["model"] == "Latitude 5420"
    # Not Linux: every interface with a MAC counts.
    assert [n["name"] for n in out.info["nics"]] == ["docker0", "eth0"]
    assert out.samples == [], "Windows gives no disk sizes through the registry"
    check_output(HardwareCollector, out)


@pytest.mark.linux
def test_real_host_inventory() -> None:
    out = HardwareCollector().collect()
    assert out.info["cpu"]["logical_cores"] >= 1
    assert out.info["memory"]["total_bytes"] > 0
    check_output(HardwareCollector, out)
