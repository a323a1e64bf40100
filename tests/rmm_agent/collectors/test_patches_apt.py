"""Test the apt backend on recorded simulations and on this Debian host."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rmm_agent.collectors._patches import PendingUpdate
from rmm_agent.collectors.patches import PATCH_QUERY_RUNNER
from rmm_agent.collectors.patches_apt import (
    APT_SIMULATE,
    AptBackend,
    classify_releases,
    parse_apt_simulation,
)

from .helpers import FakeRunner, fixture_text, write_tree


def test_parse_recorded_debian_12() -> None:
    updates = parse_apt_simulation(fixture_text("apt-get_dist-upgrade_debian12.txt"))
    assert len(updates) == 124
    assert sum(u.classification == "security" for u in updates) == 69
    by_name = {u.name: u for u in updates}
    assert by_name["bash"] == PendingUpdate(
        "bash", "5.2.15-2+b8", "5.2.15-2+b13", "other", "Debian:12.15/oldstable"
    )
    # Carried by both the point release and the security archive: a security fix.
    assert by_name["libgcrypt20-dev"] == PendingUpdate(
        "libgcrypt20-dev",
        "1.10.1-3",
        "1.10.1-3+deb12u1",
        "security",
        "Debian-Security:12/oldstable-security",
    )
    assert by_name["libcap2"].current == "1:2.66-4+deb12u2+b2"  # epoch kept
    assert updates == sorted(updates, key=lambda u: (u.name, u.available))


def test_parse_ubuntu_pockets_esm_third_party_and_new_packages() -> None:
    updates = parse_apt_simulation(fixture_text("apt-get_dist-upgrade_ubuntu2204.txt"))
    by_name = {u.name: u for u in updates}
    assert len(updates) == 10, "the 4 newly installed kernel packages are not updates"
    assert "linux-image-5.15.0-105-generic" not in by_name
    assert by_name["libc6:i386"].source == "Ubuntu:22.04/jammy-security"
    assert by_name["linux-generic"].classification == "security"
    assert by_name["tzdata"].classification == "other"
    assert by_name["vim-common"].classification == "security"  # Ubuntu Pro ESM
    chrome = by_name["google-chrome-stable"]
    assert (chrome.classification, chrome.source) == ("other", "Google LLC:1.0/stable")
    assert sum(u.classification == "security" for u in updates) == 8


def test_classify_releases() -> None:
    assert classify_releases("Debian:12.5/stable [amd64]"[:-8]) == ("other", "Debian:12.5/stable")
    assert classify_releases("Debian-Security:12/stable-security") == (
        "security",
        "Debian-Security:12/stable-security",
    )
    assert classify_releases("") == ("other", "")


def test_stamp_and_lists_age_follow_the_files(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {"lists/x_InRelease": "", "lists/lock": "", "lists/partial/.keep": "", "status": "P\n"},
    )
    lists, status = root / "lists", root / "status"
    for path, seconds in [
        (lists / "x_InRelease", 1_000),  # the server's Last-Modified
        (lists / "lock", 9_000),  # taken by apt, not a sign of an update
        (lists / "partial", 2_000),
        (lists, 1_500),
    ]:
        os.utime(path, (seconds, seconds))
    backend = AptBackend(
        runner=FakeRunner({}), lists_dir=lists, status_file=status, which=lambda _: "/x"
    )
    assert backend.available()
    assert backend.lists_updated_at() == 2_000
    before = backend.stamp()
    os.utime(status, (3_000, 3_000))
    assert backend.stamp() != before
    assert not AptBackend(status_file=status, which=lambda _: None).available()
    assert AptBackend(lists_dir=root / "none", status_file=status).lists_updated_at() is None


def test_read_runs_the_simulation_only() -> None:
    runner = FakeRunner({APT_SIMULATE: fixture_text("apt-get_dist-upgrade_ubuntu2204.txt")})
    assert len(AptBackend(runner=runner).read_updates()) == 10
    assert runner.calls == [APT_SIMULATE]
    assert "update" not in APT_SIMULATE and "-s" in APT_SIMULATE


@pytest.mark.linux
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="not an apt-based host")
def test_real_apt_simulation_on_this_host() -> None:
    backend = AptBackend(runner=PATCH_QUERY_RUNNER)
    assert backend.available()
    updates = backend.read_updates()
    for update in updates:
        assert update.name and update.current and update.available
        assert update.classification in backend.classifications
    assert backend.stamp() == backend.stamp()
    assert backend.lists_updated_at() is not None
