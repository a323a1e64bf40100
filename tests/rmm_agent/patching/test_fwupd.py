"""Test the fwupd backend on recorded `fwupdmgr get-updates --json` (fwupd 1.9, Debian 12)."""

from __future__ import annotations

import pytest

from rmm_agent.patching.base import INSTALLED, PatchError
from rmm_agent.patching.fwupd import GET_UPDATES, UPDATE, FwupdBackend, parse_get_updates

from .helpers import FakeRunner, fixture_text, found, ok

LISTED = fixture_text("fwupdmgr_get-updates_json_debian12-fwupd1.9.json")
SYSTEM = "fwupd:a45df35ac0e948ee180fe216a5f703f32dda163f"


def test_parse_newest_release_per_device() -> None:
    updates = {u.id: u for u in parse_get_updates(LISTED)}
    system = updates[SYSTEM]
    assert (system.name, system.current, system.available) == (
        "System Firmware",
        "1.17.0",
        "1.20.0",
    )
    assert (system.classification, system.severity, system.source) == (
        "firmware",
        "security",
        "lvfs",
    )
    assert (system.size_bytes, system.published, system.reboot_required) == (
        27262976, 1714521600.0, True,
    )  # fmt: skip
    tbt = updates["fwupd:ba0b4f0f3d4d8c1f1c2f7e1b6d3f1a9e0b1c2d3e"]
    assert (tbt.available, tbt.severity, tbt.reboot_required) == ("23.00", "", False)
    assert parse_get_updates('{"Devices" : []}') == []
    with pytest.raises(PatchError, match="no JSON"):
        parse_get_updates("Failed to connect to daemon")


def test_nothing_to_do_is_no_update_and_install_per_device() -> None:
    argv = (*UPDATE, SYSTEM.split(":", 1)[1])
    assert " ".join(argv) == (
        "fwupdmgr update --assume-yes --no-reboot-check --no-unreported-check "
        "--no-metadata-check a45df35ac0e948ee180fe216a5f703f32dda163f"
    )
    runner = FakeRunner(
        {
            GET_UPDATES: [ok(LISTED), (2, "", "No updates available\n")],
            argv: ok("Successfully installed firmware\n"),
        }
    )
    backend = FwupdBackend(runner=runner, which=found)
    [outcome] = backend.install([SYSTEM], 1800)
    assert (outcome.status, outcome.version, outcome.reboot_required) == (INSTALLED, "1.20.0", True)
