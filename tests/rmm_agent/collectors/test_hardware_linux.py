"""Test the Linux hardware readers on recorded /proc/cpuinfo and a fake /sys."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_agent.collectors.hardware_linux import (
    clean_dmi,
    is_physical_nic,
    parse_cpuinfo,
    read_block_devices,
    read_cpuinfo,
    read_dmi,
)

from .helpers import fixture_text, write_tree


def test_parse_x86_cpuinfo() -> None:
    info = parse_cpuinfo(fixture_text("cpuinfo_x86_64_debian12.txt"))
    assert info.model == "AMD EPYC"
    assert info.vendor == "AuthenticAMD"
    assert info.logical == 2
    assert info.sockets == 1
    assert {"hypervisor", "avx2"} <= info.flags


def test_parse_raspberry_pi_cpuinfo_names_the_board() -> None:
    info = parse_cpuinfo(fixture_text("cpuinfo_aarch64_raspberrypi4.txt"))
    assert info.model == "Raspberry Pi 4 Model B Rev 1.4"
    assert info.vendor == "ARM implementer 0x41"
    assert info.logical == 4
    assert "asimd" in info.flags and "hypervisor" not in info.flags


def test_dmi_placeholders_and_unreadable_fields_are_none(tmp_path: Path) -> None:
    dmi = "class/dmi/id/"
    write_tree(
        tmp_path,
        {
            dmi + "sys_vendor": "LENOVO\n",
            dmi + "product_name": "20XWCTO1WW\n",
            dmi + "product_version": "ThinkPad X1 Carbon Gen 9\n",
            dmi + "board_vendor": "To Be Filled By O.E.M.\n",
            dmi + "bios_vendor": "LENOVO\n",
            dmi + "bios_version": "N32ET86W (1.62 )\n",
            dmi + "bios_date": "10/04/2023\n",
            dmi + "chassis_type": "10\n",
        },
    )
    # product_serial is root-only (mode 0400); as a directory it cannot be read even by root.
    (tmp_path / dmi / "product_serial").mkdir()
    result = read_dmi(tmp_path)
    assert result["vendor"] == "LENOVO"
    assert result["version"] == "ThinkPad X1 Carbon Gen 9"
    assert result["bios_version"] == "N32ET86W (1.62 )"
    assert result["chassis_type"] == "notebook"
    assert result["serial"] is None
    assert result["board_vendor"] is None
    assert result["uuid"] is None


def test_block_devices_with_hardware_behind_them(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "block/nvme0n1/size": "1000215216\n",
            "block/nvme0n1/removable": "0\n",
            "block/nvme0n1/queue/rotational": "0\n",
            "block/nvme0n1/device/model": "Samsung SSD 980 PRO 500GB               \n",
            "block/nvme0n1/device/serial": "S5GYNX0T123456A     \n",
            "block/nvme0n1/device/firmware_rev": "5B2QGXA7\n",
            "block/sda/size": "7814037168\n",
            "block/sda/queue/rotational": "1\n",
            "block/sda/device/vendor": "ATA     \n",
            "block/sda/device/model": "ST4000DM004-2CV1\n",
            "block/sda/device/rev": "0001\n",
            "block/loop0/size": "8\n",
            "block/zram0/size": "16\n",
        },
    )
    disks = read_block_devices(tmp_path)
    assert [d["name"] for d in disks] == ["nvme0n1", "sda"]
    nvme, sda = disks
    assert nvme["size_bytes"] == 1000215216 * 512
    assert nvme["model"] == "Samsung SSD 980 PRO 500GB"
    assert nvme["serial"] == "S5GYNX0T123456A"
    assert nvme["rotational"] is False and nvme["removable"] is False
    assert sda["vendor"] == "ATA" and sda["firmware"] == "0001"
    assert sda["serial"] is None and sda["removable"] is None


def test_missing_sys_and_proc(tmp_path: Path) -> None:
    assert read_block_devices(tmp_path) == []
    assert read_cpuinfo(tmp_path).model is None
    assert set(read_dmi(tmp_path).values()) == {None}
    assert not is_physical_nic(tmp_path, "eth0")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [(" Dell Inc. ", "Dell Inc."), ("Default string", None), ("", None), (None, None)],
)
def test_clean_dmi(raw: str | None, clean: str | None) -> None:
    assert clean_dmi(raw) == clean


@pytest.mark.linux
def test_real_host_cpuinfo() -> None:
    info = read_cpuinfo()
    assert info.logical >= 1
    assert info.model
