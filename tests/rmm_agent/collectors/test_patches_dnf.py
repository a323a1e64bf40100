"""Test the dnf backend on recorded check-update and advisory output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rmm_agent.collectors._patches import PendingUpdate
from rmm_agent.collectors.base import CommandError
from rmm_agent.collectors.patches_dnf import (
    DNF_CHECK_UPDATE,
    DNF_SECURITY_LIST,
    RPM_QUERY,
    DnfBackend,
    parse_check_update,
    parse_security_list,
)

from .helpers import FakeRunner, FakeStatusRunner, fixture_text, write_tree


def test_parse_check_update_with_a_wrapped_row_and_obsoletes() -> None:
    rows = parse_check_update(fixture_text("dnf_check-update_rhel9.txt"))
    assert rows[0] == ("NetworkManager.x86_64", "1:1.46.0-4.el9_4", "baseos")
    assert ("selinux-policy-targeted-extra-long-name.noarch", "38.1.35-2.el9_4", "baseos") in rows
    assert len(rows) == 8
    assert all(name != "grub2-tools.x86_64" for name, _, _ in rows)


def test_parse_security_list_keys_by_name_and_arch() -> None:
    assert parse_security_list(fixture_text("dnf_updateinfo_list_security_rhel9.txt")) == {
        "kernel.x86_64",
        "python3-perf.x86_64",
        "glibc.i686",
        "glibc.x86_64",
    }


def backend(status: int, tmp_path: Path) -> tuple[DnfBackend, FakeRunner]:
    runner = FakeRunner(
        {
            DNF_SECURITY_LIST: fixture_text("dnf_updateinfo_list_security_rhel9.txt"),
            RPM_QUERY: fixture_text("rpm-qa_rhel9.txt"),
        }
    )
    statuses = FakeStatusRunner(
        {DNF_CHECK_UPDATE: (status, fixture_text("dnf_check-update_rhel9.txt"))}
    )
    cache = write_tree(tmp_path, {"dnf/baseos-1/repodata/repomd.xml": "<repomd/>"})
    dnf = DnfBackend(
        runner=runner,
        status_runner=statuses,
        cache_dirs=(cache / "dnf", cache / "libdnf5"),
        db_dirs=(),
        which=lambda _: "/usr/bin/dnf",
    )
    return dnf, runner


def test_updates_joined_with_advisories_and_installed_versions(tmp_path: Path) -> None:
    dnf, _ = backend(100, tmp_path)
    updates = {u.name: u for u in dnf.read_updates()}
    assert updates["glibc.i686"] == PendingUpdate(
        "glibc.i686", "2.34-83.el9_3.7", "2.34-100.el9_4.2", "security", "baseos"
    )
    assert updates["kernel.x86_64"].current == "5.14.0-362.13.1.el9_3, 5.14.0-362.8.1.el9_3"
    assert updates["tzdata.noarch"] == PendingUpdate(
        "tzdata.noarch", None, "2024a-1.el9", "other", "baseos"
    )
    assert sum(u.classification == "security" for u in updates.values()) == 4


def test_exit_0_means_none_and_exit_1_fails(tmp_path: Path) -> None:
    dnf, runner = backend(0, tmp_path)
    assert dnf.read_updates() == []
    assert runner.calls == [], "no advisories or rpm query when nothing is pending"
    failing, _ = backend(1, tmp_path)
    with pytest.raises(CommandError, match="exited 1"):
        failing.read_updates()


def test_metadata_age_and_stamp(tmp_path: Path) -> None:
    dnf, _ = backend(100, tmp_path)
    repomd = tmp_path / "dnf/baseos-1/repodata/repomd.xml"
    os.utime(repomd, (5_000, 5_000))
    assert dnf.lists_updated_at() == 5_000
    before = dnf.stamp()
    os.utime(repomd, (6_000, 6_000))
    assert dnf.stamp() != before
    assert DnfBackend(cache_dirs=(tmp_path / "none",)).lists_updated_at() is None
