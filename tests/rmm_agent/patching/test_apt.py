"""Test the apt backend on recorded outputs (simulations, install errors) and on this host."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rmm_agent.patching.apt import (
    APT_SIMULATE,
    DPKG_QUERY,
    AptBackend,
    classify_releases,
    parse_apt_simulation,
    parse_dpkg_query,
    parse_package_errors,
    read_lock_holder,
)
from rmm_agent.patching.base import FAILED, INSTALLED, LOCKED, PendingUpdate

from .helpers import FakeRunner, fixture_text, found, missing, ok


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path: text) under root and return it."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def apt_update(
    name: str, current: str, available: str, classification: str, source: str
) -> PendingUpdate:
    return PendingUpdate(f"apt:{name}", name, current, available, classification, "apt", source)


def test_parse_recorded_debian_12() -> None:
    updates = parse_apt_simulation(fixture_text("apt-get_dist-upgrade_debian12.txt"))
    assert len(updates) == 124
    assert sum(u.classification == "security" for u in updates) == 69
    by_name = {u.name: u for u in updates}
    assert by_name["bash"] == apt_update(
        "bash", "5.2.15-2+b8", "5.2.15-2+b13", "bugfix", "Debian:12.15/oldstable"
    )
    # Carried by both the point release and the security archive: a security fix.
    assert by_name["libgcrypt20-dev"] == apt_update(
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
    assert by_name["tzdata"].classification == "bugfix"
    assert by_name["libc6:i386"].id == "apt:libc6:i386"
    assert by_name["linux-generic"].reboot_required and not by_name["openssl"].reboot_required
    assert by_name["vim-common"].classification == "security"  # Ubuntu Pro ESM
    chrome = by_name["google-chrome-stable"]
    assert (chrome.classification, chrome.source) == ("bugfix", "Google LLC:1.0/stable")
    assert sum(u.classification == "security" for u in updates) == 8


def test_classify_releases() -> None:
    assert classify_releases("Debian:12.5/stable [amd64]"[:-8]) == ("bugfix", "Debian:12.5/stable")
    assert classify_releases("Debian-Security:12/stable-security") == (
        "security",
        "Debian-Security:12/stable-security",
    )
    assert classify_releases("") == ("bugfix", "")


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
    backend = AptBackend(runner=FakeRunner({}), lists_dir=lists, status_file=status, which=found)
    assert backend.available()
    assert backend.lists_updated_at() == 2_000
    before = backend.stamp()
    os.utime(status, (3_000, 3_000))
    assert backend.stamp() != before
    assert not AptBackend(status_file=status, which=missing).available()
    assert AptBackend(lists_dir=root / "none", status_file=status).lists_updated_at() is None


def test_read_runs_the_simulation_only() -> None:
    runner = FakeRunner({APT_SIMULATE: ok(fixture_text("apt-get_dist-upgrade_ubuntu2204.txt"))})
    assert len(AptBackend(runner=runner).read_updates()) == 10
    assert runner.argvs == [APT_SIMULATE]
    assert "update" not in APT_SIMULATE and "-s" in APT_SIMULATE


@pytest.mark.linux
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="not an apt-based host")
def test_real_apt_simulation_on_this_host() -> None:
    backend = AptBackend()
    assert backend.available()
    updates = backend.read_updates()
    for update in updates:
        assert update.name and update.current and update.available
        assert update.classification in backend.classifications
    assert backend.stamp() == backend.stamp()
    assert backend.lists_updated_at() is not None


UBUNTU = fixture_text("apt-get_dist-upgrade_ubuntu2204.txt")
# What the simulation says once openssl and libssl3 are installed.
UBUNTU_AFTER = "\n".join(
    line for line in UBUNTU.splitlines() if not line.startswith(("Inst openssl", "Inst libssl3"))
)
INSTALL = (
    "env", "DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_MODE=a",
    "APT_LISTCHANGES_FRONTEND=none",
    "apt-get", "install", "-y", "-q", "--only-upgrade",
    "-o", "DPkg::Lock::Timeout=0",
    "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
)  # fmt: skip


def backend_for(runner: FakeRunner, tmp_path: Path) -> AptBackend:
    return AptBackend(
        runner=runner,
        lock_file=tmp_path / "lock-frontend",
        reboot_flag=tmp_path / "reboot-required",
        which=found,
    )


def test_install_command_line_pins_the_scanned_versions(tmp_path: Path) -> None:
    backend = AptBackend(apt_options=["-o", "Dir::Etc::sourcelist=/x/sources.list"])
    updates = parse_apt_simulation(UBUNTU)
    steps = backend.install_steps([u for u in updates if u.name in ("openssl", "libc6:i386")])
    assert len(steps) == 1
    assert " ".join(steps[0].argv) == (
        "env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a APT_LISTCHANGES_FRONTEND=none "
        "apt-get install -o Dir::Etc::sourcelist=/x/sources.list -y -q --only-upgrade "
        "-o DPkg::Lock::Timeout=0 -o Dpkg::Options::=--force-confdef "
        "-o Dpkg::Options::=--force-confold libc6:i386=2.35-0ubuntu3.7 openssl=3.0.2-0ubuntu1.15"
    )


def test_install_checks_each_update_against_the_rescan(tmp_path: Path) -> None:
    argv = (*INSTALL, "libssl3=3.0.2-0ubuntu1.15", "openssl=3.0.2-0ubuntu1.15")
    runner = FakeRunner(
        {
            APT_SIMULATE: [ok(UBUNTU), ok(UBUNTU_AFTER)],
            argv: ok("Setting up openssl (3.0.2-0ubuntu1.15) ...\n"),
            (*DPKG_QUERY, "libssl3", "openssl"): (
                0,
                "libssl3:amd64\t3.0.2-0ubuntu1.15\tii \nopenssl:amd64\t3.0.2-0ubuntu1.15\tii \n",
                "",
            ),
        }
    )
    outcomes = backend_for(runner, tmp_path).install(
        ["apt:libssl3", "apt:openssl", "apt:nope"], 600
    )
    assert [(o.id, o.status, o.version) for o in outcomes] == [
        ("apt:libssl3", INSTALLED, "3.0.2-0ubuntu1.15"),
        ("apt:openssl", INSTALLED, "3.0.2-0ubuntu1.15"),
        ("apt:nope", "skipped", None),
    ]
    assert outcomes[2].message == "apt:nope is not pending on this host (apt)"
    assert runner.calls[1][0] == argv and 0 < runner.calls[1][1] <= 600


def test_a_success_that_left_the_update_pending_is_a_failure(tmp_path: Path) -> None:
    runner = FakeRunner(
        {
            APT_SIMULATE: ok(UBUNTU),
            (*INSTALL, "tzdata=2024a-0ubuntu0.22.04.1"): ok(),
            (*DPKG_QUERY, "tzdata"): ok("tzdata:all\t2024a-0ubuntu0.22.04\tii \n"),
        }
    )
    [outcome] = backend_for(runner, tmp_path).install(["apt:tzdata"], 600)
    assert outcome.status == FAILED
    assert outcome.message == (
        "apt reported success but tzdata 2024a-0ubuntu0.22.04.1 is still pending "
        "(installed: 2024a-0ubuntu0.22.04)"
    )


def test_apt_saying_the_lock_is_held_is_locked(tmp_path: Path) -> None:
    locked = fixture_text("apt-get_install_locked_debian12-apt2.6.txt")
    runner = FakeRunner(
        {
            APT_SIMULATE: ok(UBUNTU),
            (*INSTALL, "tzdata=2024a-0ubuntu0.22.04.1"): (100, "", locked),
            (*DPKG_QUERY, "tzdata"): ok("tzdata:all\t2024a-0ubuntu0.22.04\tii \n"),
        }
    )
    [outcome] = backend_for(runner, tmp_path).install(["apt:tzdata"], 600)
    assert outcome.status == LOCKED
    assert "Could not get lock /var/lib/dpkg/lock-frontend" in outcome.message


def test_apt_own_message_is_the_failure(tmp_path: Path) -> None:
    said = fixture_text("apt-get_install_version-not-found_debian12-apt2.6.txt")
    assert parse_package_errors(said) == {
        "rmm-test-hello": "Version '9.9' for 'rmm-test-hello' was not found"
    }
    runner = FakeRunner(
        {
            APT_SIMULATE: ok(UBUNTU),
            (*INSTALL, "tzdata=2024a-0ubuntu0.22.04.1"): (
                100,
                "",
                "E: Version '2024a-0ubuntu0.22.04.1' for 'tzdata' was not found\n",
            ),
            (*DPKG_QUERY, "tzdata"): ok("tzdata:all\t2024a-0ubuntu0.22.04\tii \n"),
        }
    )
    [outcome] = backend_for(runner, tmp_path).install(["apt:tzdata"], 600)
    assert (outcome.status, outcome.message) == (
        FAILED,
        "Version '2024a-0ubuntu0.22.04.1' for 'tzdata' was not found",
    )


def test_a_reboot_flag_marks_the_packages_that_asked(tmp_path: Path) -> None:
    write_tree(tmp_path, {"reboot-required": "*** System restart required ***\n",
                          "reboot-required.pkgs": "linux-generic\n"})  # fmt: skip
    after = "\n".join(
        line for line in UBUNTU.splitlines()
        if not line.startswith(("Inst linux-generic", "Inst tzdata"))
    )  # fmt: skip
    runner = FakeRunner(
        {
            APT_SIMULATE: [ok(UBUNTU), ok(after)],
            (*INSTALL, "linux-generic=5.15.0.105.102", "tzdata=2024a-0ubuntu0.22.04.1"): ok(),
            (*DPKG_QUERY, "linux-generic", "tzdata"): ok(),
        }
    )
    outcomes = backend_for(runner, tmp_path).install(["apt:linux-generic", "apt:tzdata"], 600)
    assert [(o.status, o.reboot_required) for o in outcomes] == [
        (INSTALLED, True),
        (INSTALLED, False),
    ]


def test_parse_dpkg_query_keeps_installed_packages_only() -> None:
    versions = parse_dpkg_query(
        fixture_text("dpkg-query_versions_debian12.txt") + "gone:amd64\t1.0\trc \n"
    )
    assert versions == {
        "bash:amd64": "5.2.15-2+b8",
        "bash": "5.2.15-2+b8",
        "rmm-test-hello:all": "1.1",
        "rmm-test-hello": "1.1",
    }


def test_lock_holder_is_none_for_a_free_or_missing_lock(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    assert read_lock_holder(lock) is None
    lock.write_text("")
    assert read_lock_holder(lock) is None
