"""Test the winget backend on recorded winget 1.7 output (Windows 11 23H2)."""

from __future__ import annotations

from rmm_agent.patching.base import FAILED, INSTALLED, LOCKED
from rmm_agent.patching.winget import LIST_UPGRADES, WingetBackend, parse_upgrade_list

from .helpers import FakeRunner, fixture_text, found, ok

LISTED = fixture_text("winget_upgrade_win11-23H2_winget1.7.txt")
UPGRADE = (
    "winget", "upgrade", "--exact", "--silent", "--accept-package-agreements",
    "--accept-source-agreements", "--disable-interactivity",
)  # fmt: skip


def test_parse_upgrade_table() -> None:
    updates = {u.id: u for u in parse_upgrade_list(LISTED)}
    assert sorted(updates) == [
        "winget:7zip.7zip", "winget:Git.Git", "winget:Microsoft.VCRedist.2015+.x64",
        "winget:Mozilla.Firefox", "winget:Notepad++.Notepad++", "winget:Zoom.Zoom",
    ]  # fmt: skip
    git = updates["winget:Git.Git"]
    assert (git.name, git.current, git.available, git.source) == (
        "Git",
        "2.44.0",
        "2.45.1",
        "winget",
    )
    assert git.classification == "third-party"
    assert updates["winget:Zoom.Zoom"].current is None  # "Unknown"
    assert updates["winget:Notepad++.Notepad++"].current == "8.6.7"  # "< 8.6.7"
    assert updates["winget:Microsoft.VCRedist.2015+.x64"].name.endswith("Redist…")
    assert "winget:Python.Python.3.11" not in updates  # pinned: explicit targeting only
    assert parse_upgrade_list("No installed package found matching input criteria.\r\n") == []


def test_one_upgrade_per_package_with_the_version_scanned() -> None:
    steps = WingetBackend().install_steps(parse_upgrade_list(LISTED)[:2])
    assert [" ".join(s.argv) for s in steps] == [
        " ".join((*UPGRADE, "--id", "7zip.7zip", "--version", "24.05")),
        " ".join((*UPGRADE, "--id", "Git.Git", "--version", "2.45.1")),
    ]


def test_install_busy_failed_and_installed() -> None:
    git_argv = (*UPGRADE, "--id", "Git.Git", "--version", "2.45.1")
    zip_argv = (*UPGRADE, "--id", "7zip.7zip", "--version", "24.05")
    zoom_argv = (*UPGRADE, "--id", "Zoom.Zoom", "--version", "6.0.11.39959")
    after = "\n".join(line for line in LISTED.splitlines() if "7zip.7zip" not in line)
    runner = FakeRunner(
        {
            LIST_UPGRADES: [ok(LISTED), ok(after)],
            git_argv: (0x8A150102, fixture_text(
                "winget_upgrade_install-in-progress_win11-23H2_winget1.7.txt"), ""),
            zip_argv: ok("Successfully installed\r\n"),
            zoom_argv: (0x8A150101, "Application is currently running. Exit the application "
                        "then try again.\r\n", ""),
        }
    )  # fmt: skip
    backend = WingetBackend(runner=runner, which=found)
    outcomes = backend.install(["winget:Git.Git", "winget:7zip.7zip", "winget:Zoom.Zoom"], 3600)
    assert [o.status for o in outcomes] == [LOCKED, INSTALLED, FAILED]
    assert "Another installation is already in progress" in outcomes[0].message
    assert "(the application is running: close it and try again)" in outcomes[2].message
