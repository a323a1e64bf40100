"""Test the Windows registry backend on a recorded Uninstall export."""

from __future__ import annotations

from rmm_agent.collectors._packages import Package
from rmm_agent.collectors.software_windows import (
    UNINSTALL_KEY,
    WindowsRegistryBackend,
    parse_uninstall_entry,
)

from .fake_winreg import FakeWinreg, load_reg
from .helpers import fixture_path


def registry() -> FakeWinreg:
    return FakeWinreg(load_reg(fixture_path("windows_uninstall.reg")))


def test_programs_from_both_views_and_the_user() -> None:
    reg = registry()
    packages = WindowsRegistryBackend(winreg_module=reg, is_64bit_os=True).read_packages()
    assert packages == [
        Package("7-Zip 23.01 (x64)", "23.01", "x64"),
        Package("7-Zip 23.01 (x64)", "23.01", "x86"),
        Package("Adobe Acrobat Reader DC", "24.001.20615", "x86"),
        Package("Dell Command | Update for Windows Universal", "5.2.0", "x64"),
        Package("Google Chrome", "123.0.6312.106", "x86"),
        Package("Microsoft Edge", "123.0.2420.97", "x86"),
        Package("Microsoft OneDrive", "24.055.0317.0002", None),
        Package("Zoom Workplace", "6.0.2 (37193)", None),
    ]
    assert reg.opened == reg.closed, "every key opened is closed"


def test_32_bit_windows_reads_one_view() -> None:
    packages = WindowsRegistryBackend(winreg_module=registry(), is_64bit_os=False).read_packages()
    assert {p.arch for p in packages} == {"x86", None}
    assert "Dell Command | Update for Windows Universal" in {p.name for p in packages}


def test_stamp_changes_when_an_entry_is_written() -> None:
    reg = registry()
    backend = WindowsRegistryBackend(winreg_module=reg, is_64bit_os=True)
    before = backend.stamp()
    assert backend.stamp() == before
    chrome = UNINSTALL_KEY.replace("SOFTWARE\\", "SOFTWARE\\WOW6432Node\\", 1) + "\\Google Chrome"
    reg.times[(reg.HKEY_LOCAL_MACHINE, chrome)] = 133600000000000000
    assert backend.stamp() != before


def test_entries_that_are_not_programs() -> None:
    assert parse_uninstall_entry({}, "x64") is None
    assert parse_uninstall_entry({"DisplayName": "C++", "SystemComponent": 1}, "x64") is None
    assert parse_uninstall_entry({"DisplayName": "KB1", "ParentKeyName": "OS"}, "x64") is None
    assert parse_uninstall_entry({"DisplayName": "KB2", "ReleaseType": "Hotfix"}, "x64") is None
    assert parse_uninstall_entry({"DisplayName": " Tool "}, None) == Package("Tool", "", None)
