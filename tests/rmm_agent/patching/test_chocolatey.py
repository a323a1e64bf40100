"""Test the Chocolatey backend on recorded choco 2.2 output (Windows 11 23H2)."""

from __future__ import annotations

from rmm_agent.patching.base import INSTALLED, LOCKED
from rmm_agent.patching.chocolatey import OUTDATED, ChocolateyBackend, parse_outdated

from .helpers import FakeRunner, fixture_text, found, ok

LISTED = fixture_text("choco_outdated_limit-output_win11-23H2_choco2.2.txt")
UPGRADE = ("choco", "upgrade", "--yes", "--no-progress", "--limit-output", "--no-color")


def test_parse_outdated_leaves_pinned_packages_out() -> None:
    updates = {u.id: u for u in parse_outdated(LISTED)}
    assert sorted(updates) == [
        "chocolatey:chocolatey", "chocolatey:git", "chocolatey:git.install",
        "chocolatey:notepadplusplus.install", "chocolatey:vlc",
    ]  # fmt: skip
    vlc = updates["chocolatey:vlc"]
    assert (vlc.current, vlc.available, vlc.classification) == ("3.0.20", "3.0.21", "third-party")


def test_install_pins_versions_and_reads_a_busy_installer_as_locked() -> None:
    after = "\n".join(line for line in LISTED.splitlines() if not line.startswith("git"))
    git = (*UPGRADE, "git", "--version", "2.45.2")
    vlc = (*UPGRADE, "vlc", "--version", "3.0.21")
    runner = FakeRunner(
        {
            OUTDATED: [ok(LISTED), ok(after)],
            git: ok("git v2.45.2 [Approved]\r\nThe upgrade of git was successful.\r\n"),
            vlc: (1618, fixture_text("choco_upgrade_msi-busy_win11-23H2_choco2.2.txt"), ""),
        }
    )
    outcomes = ChocolateyBackend(runner=runner, which=found).install(
        ["chocolatey:git", "chocolatey:vlc"], 3600
    )
    assert [o.status for o in outcomes] == [INSTALLED, LOCKED]
    assert "Another installation currently in progress" in outcomes[1].message
