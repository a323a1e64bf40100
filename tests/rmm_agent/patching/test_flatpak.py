"""Test the Flatpak backend on recorded flatpak 1.14 output (Debian 12)."""

from __future__ import annotations

from rmm_agent.patching.base import FAILED, INSTALLED
from rmm_agent.patching.flatpak import (
    LIST_INSTALLED,
    LIST_UPDATES,
    UPDATE,
    FlatpakBackend,
    parse_updates,
)

from .helpers import FakeRunner, fixture_text, found, ok

LISTED = fixture_text("flatpak_remote-ls_updates_debian12-flatpak1.14.txt")
INSTALLED_LIST = fixture_text("flatpak_list_debian12-flatpak1.14.txt")
FIREFOX = "flatpak:app/org.mozilla.firefox/x86_64/stable"


def test_parse_updates_joined_with_installed_versions() -> None:
    updates = {u.id: u for u in parse_updates(LISTED, INSTALLED_LIST)}
    assert len(updates) == 3
    firefox = updates[FIREFOX]
    assert (firefox.name, firefox.current, firefox.available, firefox.source) == (
        "Firefox", "126.0.1", "127.0", "flathub",
    )  # fmt: skip
    assert firefox.size_bytes == 98_200_000 and firefox.classification == "third-party"


def test_update_by_ref_then_rescan() -> None:
    office = "flatpak:app/org.libreoffice.LibreOffice/x86_64/stable"
    argv = (*UPDATE, "app/org.mozilla.firefox/x86_64/stable", office.split(":", 1)[1])
    after = "\n".join(line for line in LISTED.splitlines() if "firefox" not in line)
    runner = FakeRunner(
        {
            LIST_UPDATES: [ok(LISTED), ok(after)],
            LIST_INSTALLED: ok(INSTALLED_LIST),
            argv: (1, "", "error: Failed to install org.libreoffice.LibreOffice: No space left\n"),
        }
    )
    outcomes = FlatpakBackend(runner=runner, which=found).install([FIREFOX, office], 1800)
    assert [o.status for o in outcomes] == [INSTALLED, FAILED]
    assert "No space left" in outcomes[1].message
