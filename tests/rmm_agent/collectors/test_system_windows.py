"""Test the Windows registry readers of OS identity, firmware and pending reboots."""

from __future__ import annotations

import pytest

from rmm_agent.collectors.system_windows import (
    REBOOT_KEYS,
    parse_current_version,
    read_firmware_strings,
    read_os_identity,
    read_reboot_pending,
)

from .fake_winreg import FakeWinreg, load_reg
from .helpers import fixture_path


def registry() -> FakeWinreg:
    return FakeWinreg(load_reg(fixture_path("windows_system.reg")))


def test_os_identity_names_windows_11_despite_product_name() -> None:
    assert read_os_identity(registry()) == ("Windows 11 Pro", "10.0.22631.3349", "23H2")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {
                "ProductName": "Windows Server 2019 Standard",
                "CurrentBuildNumber": "17763",
                "CurrentMajorVersionNumber": 10,
                "CurrentMinorVersionNumber": 0,
                "UBR": 5576,
                "ReleaseId": "1809",
            },
            ("Windows Server 2019 Standard", "10.0.17763.5576", "1809"),
        ),
        (
            {
                "ProductName": "Windows 7 Professional",
                "CurrentVersion": "6.1",
                "CurrentBuildNumber": "7601",
            },
            ("Windows 7 Professional", "6.1.7601", None),
        ),
    ],
)
def test_parse_current_version(values: dict[str, object], expected: tuple[str, ...]) -> None:
    assert parse_current_version(values) == expected


def test_firmware_strings() -> None:
    assert read_firmware_strings(registry()) == [
        "Latitude 5420",
        "Dell Inc.",
        "Dell Inc.",
        "Dell Inc.",
    ]


def test_reboot_pending_since_the_key_was_written() -> None:
    reg = registry()
    key = (reg.HKEY_LOCAL_MACHINE, REBOOT_KEYS[0])
    reg.times[key] = 133564032000000000  # 2024-04-01T00:00:00Z
    assert read_reboot_pending(reg) == pytest.approx(1711929600.0)
    del reg.keys[key]
    assert read_reboot_pending(reg) is None
    assert reg.opened == reg.closed
