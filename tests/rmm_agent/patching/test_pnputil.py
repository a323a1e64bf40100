"""Test the pnputil backend on recorded pnputil output (Windows 11 23H2)."""

from __future__ import annotations

from rmm_agent.patching.base import FAILED, INSTALLED, SKIPPED
from rmm_agent.patching.pnputil import (
    ENUM_DRIVERS,
    PnputilBackend,
    add_driver_argv,
    delete_driver_argv,
    parse_enum_drivers,
)

from .helpers import FakeRunner, fixture_text, found, ok

INF = r"C:\ProgramData\rmm\drivers\intel-gfx\iigd_dch.inf"
STORE = fixture_text("pnputil_enum-drivers_win11-23H2.txt")


def test_command_lines() -> None:
    assert add_driver_argv(INF) == ["pnputil.exe", "/add-driver", INF, "/install"]
    assert delete_driver_argv("oem42.inf") == [
        "pnputil.exe", "/delete-driver", "oem42.inf", "/uninstall",
    ]  # fmt: skip


def test_parse_driver_store() -> None:
    store = parse_enum_drivers(STORE)
    assert sorted(store) == ["oem42.inf", "oem7.inf"]
    assert store["oem42.inf"]["Driver Version"] == "03/11/2024 31.0.101.5379"
    assert store["oem42.inf"]["Original Name"] == "iigd_dch.inf"


def test_add_verify_fail_and_refuse() -> None:
    bad = r"C:\ProgramData\rmm\drivers\bad\bad.inf"
    runner = FakeRunner(
        {
            tuple(add_driver_argv(INF)): (
                3010, fixture_text("pnputil_add-driver_win11-23H2.txt"), "",
            ),
            tuple(add_driver_argv(bad)): (
                1, fixture_text("pnputil_add-driver_bad-signature_win11-23H2.txt"), "",
            ),
            ENUM_DRIVERS: ok(STORE),
        }
    )  # fmt: skip
    backend = PnputilBackend(runner=runner, which=found)
    assert backend.read_updates() == []
    added, failed, refused = backend.install(
        [f"pnputil:{INF}", f"pnputil:{bad}", "pnputil:relative\\x.inf"], 600
    )
    assert (added.status, added.version, added.reboot_required) == (
        INSTALLED, "03/11/2024 31.0.101.5379", True,
    )  # fmt: skip
    assert failed.status == FAILED and "Failed to add driver package: The hash" in failed.message
    assert refused.status == SKIPPED
