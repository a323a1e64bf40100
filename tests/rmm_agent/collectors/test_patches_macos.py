"""Test the softwareupdate backend on recorded output of current and older macOS."""

from __future__ import annotations

import plistlib
from datetime import UTC, datetime
from pathlib import Path

from rmm_agent.collectors._patches import PendingUpdate
from rmm_agent.collectors.patches_macos import (
    SOFTWAREUPDATE_LIST,
    SoftwareUpdateBackend,
    parse_softwareupdate_list,
)

from .helpers import FakeRunner, fixture_text


def test_parse_macos_14() -> None:
    updates = parse_softwareupdate_list(fixture_text("softwareupdate_list_macos14.txt"))
    assert [(u.name, u.available, u.classification) for u in updates] == [
        ("Background Security Improvement 14.4.1 (a)", "14.4.1 (a)", "security"),
        ("Command Line Tools for Xcode", "15.3", "other"),
        ("Safari", "17.4.1", "other"),
        ("macOS Sonoma 14.4.1", "14.4.1", "other"),
    ]


def test_parse_macos_10_13_layout() -> None:
    updates = parse_softwareupdate_list(fixture_text("softwareupdate_list_macos10.13.txt"))
    assert updates == [
        PendingUpdate("Safari", None, "12.1.1", "other", "softwareupdate"),
        PendingUpdate("Security Update 2019-003", None, "10.13.6", "security", "softwareupdate"),
    ]


def test_nothing_pending() -> None:
    assert parse_softwareupdate_list("Software Update Tool\n\nFinding available software\n") == []


def test_backend_reads_the_list_and_the_last_check(tmp_path: Path) -> None:
    plist = tmp_path / "com.apple.SoftwareUpdate.plist"
    when = datetime(2024, 4, 20, 8, 30)  # plists store UTC, plistlib returns it naive
    plist.write_bytes(plistlib.dumps({"LastSuccessfulDate": when}))
    runner = FakeRunner({SOFTWAREUPDATE_LIST: fixture_text("softwareupdate_list_macos14.txt")})
    backend = SoftwareUpdateBackend(runner=runner, plist=plist, which=lambda _: "/usr/sbin/x")
    assert backend.available()
    assert len(backend.read_updates()) == 4
    assert backend.lists_updated_at() == when.replace(tzinfo=UTC).timestamp()
    assert SoftwareUpdateBackend(plist=tmp_path / "none").lists_updated_at() is None
