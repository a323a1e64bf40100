"""Test the Windows hardware readers on a recorded registry export."""

from __future__ import annotations

import pytest

from rmm_agent.collectors.hardware_windows import (
    parse_disk_instance,
    read_cpu,
    read_disks,
    read_system,
)

from .fake_winreg import FakeWinreg, load_reg
from .helpers import fixture_path


def registry() -> FakeWinreg:
    return FakeWinreg(load_reg(fixture_path("windows_system.reg")))


def test_cpu_and_system() -> None:
    reg = registry()
    assert read_cpu(reg) == {
        "model": "11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz",
        "vendor": "GenuineIntel",
    }
    system = read_system(reg)
    assert system["vendor"] == "Dell Inc."
    assert system["model"] == "Latitude 5420"
    assert system["bios_version"] == "1.21.0"
    assert system["version"] is None, "empty SystemVersion"
    assert system["serial"] is None, "not in the registry"


def test_disks_from_the_disk_enum() -> None:
    disks = read_disks(registry())
    assert [(d["name"], d["vendor"], d["model"], d["removable"]) for d in disks] == [
        ("disk0", "NVMe", "Samsung SSD 980", False),
        ("disk1", "SanDisk", "Ultra", True),
    ]


@pytest.mark.parametrize(
    ("instance", "fields"),
    [
        (
            r"IDE\DiskST1000DM003-1CH162___________________CC47\5&1c5a3c2a&0&0.0.0",
            {"vendor": None, "model": "ST1000DM003-1CH162", "revision": "CC47"},
        ),
        (
            r"SCSI\Disk&Ven_&Prod_VBOX_HARDDISK\4&2617aeae&0&000000",
            {"vendor": None, "model": "VBOX HARDDISK", "revision": None},
        ),
    ],
)
def test_parse_disk_instance(instance: str, fields: dict[str, str | None]) -> None:
    assert parse_disk_instance(instance) == fields


def test_missing_keys_give_empty_facts() -> None:
    reg = FakeWinreg({})
    assert read_cpu(reg) == {"model": None, "vendor": None}
    assert read_disks(reg) == []
