"""Test the rpm backend on recorded output and a fake database directory."""

from __future__ import annotations

import os
from pathlib import Path

from rmm_agent.collectors._packages import Package
from rmm_agent.collectors.software_rpm import RPM_FORMAT, RpmBackend, parse_rpm_query

from .helpers import FakeRunner, fixture_text


def test_parse_recorded_rhel9() -> None:
    packages = parse_rpm_query(fixture_text("rpm-qa_rhel9.txt"))
    assert Package("shadow-utils", "2:4.9-8.el9", "x86_64") in packages
    assert [p.version for p in packages if p.name == "kernel"] == [
        "5.14.0-362.13.1.el9_3",
        "5.14.0-362.8.1.el9_3",
    ]
    assert {p.arch for p in packages if p.name == "glibc"} == {"i686", "x86_64"}
    assert all(p.name != "gpg-pubkey" for p in packages)


def test_backend_reads_the_first_non_empty_database(tmp_path: Path) -> None:
    legacy, sysimage = tmp_path / "var-lib-rpm", tmp_path / "sysimage-rpm"
    legacy.mkdir()  # present but empty, as on Fedora 36+ after the move
    sysimage.mkdir()
    (sysimage / "rpmdb.sqlite").write_bytes(b"SQLite format 3\x00")
    runner = FakeRunner({("rpm", "-qa", "--qf", RPM_FORMAT): fixture_text("rpm-qa_rhel9.txt")})
    backend = RpmBackend(runner=runner, db_dirs=(legacy, sysimage), which=lambda _: "/bin/rpm")
    assert backend.available()
    before = backend.stamp()
    os.utime(sysimage / "rpmdb.sqlite", ns=(1, 1))
    assert backend.stamp() != before
    assert len(backend.read_packages()) == 7
    assert not RpmBackend(db_dirs=(legacy,), which=lambda _: "/bin/rpm").available()
