"""Test the Homebrew backend on recorded `brew outdated --json=v2` (brew 4.3, macOS 14)."""

from __future__ import annotations

import os

from rmm_agent.patching.base import INSTALLED, LOCKED
from rmm_agent.patching.homebrew import BREW_ENV, HomebrewBackend, parse_outdated

from .helpers import FakeRunner, fixture_text, found, ok

LISTED = fixture_text("brew_outdated_json-v2_macos14-brew4.3.json")


def test_parse_formulae_and_casks_without_pinned() -> None:
    updates = {u.id: u for u in parse_outdated(LISTED)}
    assert sorted(updates) == [
        "homebrew:cask/firefox", "homebrew:cask/visual-studio-code",
        "homebrew:formula/openssl@3", "homebrew:formula/python@3.12",
    ]  # fmt: skip
    ssl = updates["homebrew:formula/openssl@3"]
    assert (ssl.name, ssl.current, ssl.available, ssl.source) == (
        "openssl@3",
        "3.3.0",
        "3.3.1",
        "formula",
    )
    assert parse_outdated('{"formulae": [], "casks": []}') == []
    old_cask = (
        '{"casks": [{"name": "zoom", "installed_versions": "5.0", "current_version": "6.0"}]}'
    )
    assert parse_outdated(old_cask)[0].current == "5.0"


def test_brew_runs_as_its_owner_and_upgrades_by_kind() -> None:
    backend = HomebrewBackend(user="alice", which=lambda _: "/opt/homebrew/bin/brew")
    steps = backend.install_steps(parse_outdated(LISTED))
    argvs = [s.argv for s in steps]
    command = ["env", *BREW_ENV, "/opt/homebrew/bin/brew"]
    prefix = ["sudo", "-u", "alice", "-H"] if os.geteuid() == 0 else []
    assert argvs == [
        [*prefix, *command, "upgrade", "--formula", "openssl@3", "python@3.12"],
        [*prefix, *command, "upgrade", "--cask", "firefox", "visual-studio-code"],
    ]


def test_upgrade_locked_and_installed() -> None:
    backend = HomebrewBackend(user="alice", which=found)
    listed = tuple(backend.brew_argv("outdated", "--json=v2"))
    after = LISTED.replace('"name": "firefox"', '"name": "firefox", "pinned": true')
    formula = tuple(backend.brew_argv("upgrade", "--formula", "openssl@3"))
    cask = tuple(backend.brew_argv("upgrade", "--cask", "firefox"))
    runner = FakeRunner(
        {
            listed: [ok(LISTED), ok(after)],
            formula: (1, "", fixture_text("brew_upgrade_locked_macos14-brew4.3.txt")),
            cask: ok("==> Upgrading firefox\n"),
        }
    )
    outcomes = HomebrewBackend(runner=runner, user="alice", which=found).install(
        ["homebrew:formula/openssl@3", "homebrew:cask/firefox"], 1800
    )
    assert [o.status for o in outcomes] == [LOCKED, INSTALLED]
