"""Test the dnf backend on recorded RHEL 9 outputs: parsing, commands, install, locks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rmm_agent.patching._rpm import RPM_QUERY, parse_rpm_versions
from rmm_agent.patching.base import FAILED, INSTALLED, LOCKED, PatchError
from rmm_agent.patching.dnf import (
    DnfBackend,
    parse_check_update,
    parse_security_list,
    parse_updateinfo,
    read_pid_lock,
)

from .helpers import FakeRunner, fixture_text, found, ok

CHECK = ("env", "LC_ALL=C", "dnf", "-C", "-q", "check-update")
INFO = ("env", "LC_ALL=C", "dnf", "-C", "-q", "updateinfo", "list", "--available")
UPGRADE = ("env", "LC_ALL=C", "dnf", "-y", "--setopt=exit_on_lock=True", "upgrade")
CHECK_UPDATE = fixture_text("dnf_check-update_rhel9.4-dnf4.14.txt")
UPDATEINFO = fixture_text("dnf_updateinfo_list_available_rhel9.4-dnf4.14.txt")
RPM_QA = fixture_text("rpm-qa_rhel9.txt")


def test_parse_check_update_with_a_wrapped_row_and_obsoletes() -> None:
    rows = parse_check_update(CHECK_UPDATE)
    assert rows[0] == ("NetworkManager.x86_64", "1:1.46.0-4.el9_4", "baseos")
    assert ("selinux-policy-targeted-extra-long-name.noarch", "38.1.35-2.el9_4", "baseos") in rows
    assert len(rows) == 8
    assert all(name != "grub2-tools.x86_64" for name, _, _ in rows)


def test_parse_advisories_types_and_severities() -> None:
    security = fixture_text("dnf_updateinfo_list_security_rhel9.4-dnf4.14.txt")
    assert parse_security_list(security) == {
        "kernel.x86_64", "python3-perf.x86_64", "glibc.i686", "glibc.x86_64",
    }  # fmt: skip
    info = parse_updateinfo(UPDATEINFO)
    assert info["glibc.i686"] == ("security", "Important")
    assert info["NetworkManager.x86_64"] == ("bugfix", "")
    assert info["selinux-policy-targeted-extra-long-name.noarch"] == ("feature", "")
    # dnf 5 names the type without a severity; security wins over another advisory.
    assert parse_updateinfo(
        "FEDORA-2024-1 security openssl-3.2.1-2.fc40.x86_64\n"
        "FEDORA-2024-2 bugfix openssl-3.2.1-2.fc40.x86_64\n"
    ) == {"openssl.x86_64": ("security", "")}


def backend(
    tmp_path: Path, answers: dict[tuple[str, ...], object]
) -> tuple[DnfBackend, FakeRunner]:
    runner = FakeRunner(answers)  # type: ignore[arg-type]
    dnf = DnfBackend(
        runner=runner,
        cache_dirs=(tmp_path / "dnf", tmp_path / "libdnf5"),
        db_dirs=(),
        locks=(tmp_path / ".rpm.lock",),
        pid_lock=tmp_path / "rpmdb_lock.pid",
        which=found,
    )
    return dnf, runner


def scan(status: int = 100) -> dict[tuple[str, ...], object]:
    return {CHECK: (status, CHECK_UPDATE, ""), INFO: ok(UPDATEINFO), RPM_QUERY: ok(RPM_QA)}


def test_updates_joined_with_advisories_and_installed_versions(tmp_path: Path) -> None:
    dnf, _ = backend(tmp_path, scan())
    updates = {u.name: u for u in dnf.read_updates()}
    glibc = updates["glibc.i686"]
    assert (glibc.id, glibc.current, glibc.available) == (
        "dnf:glibc.i686", "2.34-83.el9_3.7", "2.34-100.el9_4.2",
    )  # fmt: skip
    assert (glibc.classification, glibc.severity, glibc.source) == (
        "security",
        "Important",
        "baseos",
    )
    assert updates["kernel.x86_64"].current == "5.14.0-362.8.1.el9_3, 5.14.0-362.13.1.el9_3"
    assert updates["kernel.x86_64"].reboot_required
    tz = updates["tzdata.noarch"]
    assert (tz.current, tz.classification) == (None, "bugfix")
    assert sum(u.classification == "security" for u in updates.values()) == 4


def test_exit_0_means_none_and_exit_1_fails(tmp_path: Path) -> None:
    dnf, runner = backend(tmp_path, scan(0))
    assert dnf.read_updates() == []
    assert runner.argvs == [CHECK], "no advisories or rpm query when nothing is pending"
    failing, _ = backend(tmp_path, scan(1))
    with pytest.raises(PatchError, match="exited 1"):
        failing.read_updates()


def test_metadata_age_and_stamp(tmp_path: Path) -> None:
    repomd = tmp_path / "dnf/baseos-1/repodata/repomd.xml"
    repomd.parent.mkdir(parents=True)
    repomd.write_text("<repomd/>")
    dnf, _ = backend(tmp_path, {})
    os.utime(repomd, (5_000, 5_000))
    assert dnf.lists_updated_at() == 5_000
    before = dnf.stamp()
    os.utime(repomd, (6_000, 6_000))
    assert dnf.stamp() != before
    assert DnfBackend(cache_dirs=(tmp_path / "none",)).lists_updated_at() is None


def test_yum_is_used_where_dnf_is_missing(tmp_path: Path) -> None:
    yum_only = DnfBackend(which=lambda name: "/usr/bin/yum" if name == "yum" else None)
    assert yum_only.available() and yum_only.manager() == "yum"
    assert not DnfBackend(which=lambda _name: None).available()


def rpm_after(*lines: str) -> str:
    return RPM_QA + "".join(f"{line}\n" for line in lines)


def test_install_upgrades_exact_nevras_and_checks_rpm(tmp_path: Path) -> None:
    after = CHECK_UPDATE.replace("glibc.i686", "#").replace("glibc.x86_64", "#")
    argv = (*UPGRADE, "glibc-2.34-100.el9_4.2.i686", "glibc-2.34-100.el9_4.2.x86_64")
    answers = scan()
    answers[CHECK] = [(100, CHECK_UPDATE, ""), (100, after, "")]
    answers[RPM_QUERY] = [
        ok(RPM_QA),
        ok(rpm_after("glibc\t2.34-100.el9_4.2\tx86_64", "glibc\t2.34-100.el9_4.2\ti686")),
    ]
    answers[argv] = ok("Complete!\n")
    dnf, runner = backend(tmp_path, answers)
    outcomes = dnf.install(["dnf:glibc.i686", "dnf:glibc.x86_64"], 900)
    assert [(o.status, o.version) for o in outcomes] == [
        (INSTALLED, "2.34-100.el9_4.2"),
        (INSTALLED, "2.34-100.el9_4.2"),
    ]
    assert argv in runner.argvs


def test_dnf_lock_and_own_errors(tmp_path: Path) -> None:
    argv = (*UPGRADE, "tzdata-2024a-1.el9.noarch")
    answers = scan()
    answers[argv] = (200, "", fixture_text("dnf_upgrade_locked_rhel9.4-dnf4.14.txt"))
    dnf, _ = backend(tmp_path, answers)
    [outcome] = dnf.install(["dnf:tzdata.noarch"], 900)
    assert outcome.status == LOCKED and "RPMDB already locked by 41822" in outcome.message
    answers[argv] = (1, "", fixture_text("dnf_upgrade_no-match_rhel9.4-dnf4.14.txt"))
    dnf, _ = backend(tmp_path, answers)
    [outcome] = dnf.install(["dnf:tzdata.noarch"], 900)
    assert outcome.status == FAILED
    assert "No match for argument: tzdata-2024a-1.el9.noarch" in outcome.message


@pytest.mark.linux
def test_a_live_pid_lock_is_locked(tmp_path: Path) -> None:
    lock = tmp_path / "rpmdb_lock.pid"
    assert read_pid_lock(lock) is None
    lock.write_text("1")  # init: alive on every Linux host
    assert "names running process 1" in (read_pid_lock(lock) or "")
    dnf, runner = backend(tmp_path, scan())
    [outcome] = dnf.install(["dnf:tzdata.noarch"], 900)
    assert outcome.status == LOCKED
    assert not any("upgrade" in argv for argv in runner.argvs)


def test_parse_rpm_versions() -> None:
    versions = parse_rpm_versions(RPM_QA)
    assert versions["glibc.i686"] == ["2.34-83.el9_3.7"]
    assert versions["shadow-utils.x86_64"] == ["2:4.9-8.el9"]
