"""Test the softwareupdate backend on recorded macOS outputs."""

from __future__ import annotations

import plistlib
from datetime import UTC, datetime
from pathlib import Path

from rmm_agent.patching.base import FAILED, INSTALLED
from rmm_agent.patching.softwareupdate import (
    SOFTWAREUPDATE_LIST,
    SoftwareUpdateBackend,
    parse_softwareupdate_list,
)

from .helpers import FakeRunner, fixture_text, found, ok

LIST_14 = fixture_text("softwareupdate_list_macos14.txt")


def test_parse_macos_14() -> None:
    updates = parse_softwareupdate_list(LIST_14)
    assert [(u.name, u.available, u.classification) for u in updates] == [
        ("Background Security Improvement 14.4.1 (a)", "14.4.1 (a)", "security"),
        ("Command Line Tools for Xcode", "15.3", "bugfix"),
        ("Safari", "17.4.1", "bugfix"),
        ("macOS Sonoma 14.4.1", "14.4.1", "bugfix"),
    ]
    macos = updates[-1]
    assert macos.id == "softwareupdate:macOS Sonoma 14.4.1-23E224"
    assert (macos.size_bytes, macos.reboot_required) == (1124608 * 1024, True)
    assert not updates[2].reboot_required


def test_parse_macos_10_13_layout() -> None:
    updates = parse_softwareupdate_list(fixture_text("softwareupdate_list_macos10.13.txt"))
    assert [(u.id, u.name, u.available, u.classification, u.reboot_required) for u in updates] == [
        ("softwareupdate:Safari12.1.1HighSierraAuto-12.1.1", "Safari", "12.1.1", "bugfix", False),
        ("softwareupdate:Security Update 2019-003-10.13.6", "Security Update 2019-003", "10.13.6",
         "security", True),
    ]  # fmt: skip


def test_nothing_pending() -> None:
    assert parse_softwareupdate_list("Software Update Tool\n\nFinding available software\n") == []


def test_backend_reads_the_list_and_the_last_check(tmp_path: Path) -> None:
    plist = tmp_path / "com.apple.SoftwareUpdate.plist"
    when = datetime(2024, 4, 20, 8, 30)  # plists store UTC, plistlib returns it naive
    plist.write_bytes(plistlib.dumps({"LastSuccessfulDate": when}))
    runner = FakeRunner({SOFTWAREUPDATE_LIST: ok(LIST_14)})
    backend = SoftwareUpdateBackend(runner=runner, plist=plist, which=found)
    assert backend.available()
    assert len(backend.read_updates()) == 4
    assert backend.lists_updated_at() == when.replace(tzinfo=UTC).timestamp()
    assert SoftwareUpdateBackend(plist=tmp_path / "none").lists_updated_at() is None


def test_install_by_label_then_the_rescan_decides() -> None:
    safari = "* Label: Safari17.4.1VenturaAuto-17.4.1"
    after = LIST_14.replace(safari, "* Label: gone").replace("Title: Safari,", "")
    argv = (
        "softwareupdate", "--install", "--no-scan", "--agree-to-license",
        "Safari17.4.1VenturaAuto-17.4.1", "Command Line Tools for Xcode-15.3",
    )  # fmt: skip
    runner = FakeRunner(
        {
            SOFTWAREUPDATE_LIST: [ok(LIST_14), ok(after)],
            argv: ok(fixture_text("softwareupdate_install_safari_macos14.4.txt")),
        }
    )
    backend = SoftwareUpdateBackend(runner=runner, which=found)
    outcomes = backend.install(
        [
            "softwareupdate:Safari17.4.1VenturaAuto-17.4.1",
            "softwareupdate:Command Line Tools for Xcode-15.3",
        ],
        3600,
    )
    assert [(o.status, o.version) for o in outcomes] == [(INSTALLED, "17.4.1"), (FAILED, None)]
    assert outcomes[1].message == (
        "softwareupdate reported success but Command Line Tools for Xcode 15.3 is still pending "
        "(installed: unknown)"
    )
