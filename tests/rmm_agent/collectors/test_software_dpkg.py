"""Test the dpkg backend on recorded output and on this Debian host."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rmm_agent.collectors._packages import Package
from rmm_agent.collectors.software_dpkg import DPKG_FORMAT, DpkgBackend, parse_dpkg_query

from .helpers import FakeRunner, fixture_text

QUERY = ("dpkg-query", "-W", f"-f={DPKG_FORMAT}")


def test_parse_recorded_debian_12() -> None:
    packages = parse_dpkg_query(fixture_text("dpkg-query_debian12.txt"))
    assert len(packages) == 794
    by_name = {p.name: p for p in packages}
    assert by_name["bash"] == Package("bash", "5.2.15-2+b8", "amd64")
    assert by_name["adduser"].arch == "all"
    assert packages == sorted(packages, key=lambda p: (p.name, p.version, p.arch or ""))


def test_only_installed_packages_count() -> None:
    packages = parse_dpkg_query(fixture_text("dpkg-query_mixed_states.txt"))
    assert [(p.name, p.arch) for p in packages] == [
        ("bash", "amd64"),
        ("libc6", "amd64"),
        ("libc6", "i386"),
        ("linux-image-amd64", "amd64"),  # held, still installed
        ("man-db", "amd64"),  # installed, triggers pending
    ]


def test_availability_needs_the_tool_and_the_database(tmp_path: Path) -> None:
    status = tmp_path / "status"
    backend = DpkgBackend(runner=FakeRunner({}), status_file=status, which=lambda _: "/usr/bin/x")
    assert not backend.available()
    status.write_text("Package: bash\n")
    assert backend.available()
    assert not DpkgBackend(status_file=status, which=lambda _: None).available()


@pytest.mark.linux
@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a dpkg-based host")
def test_real_dpkg_query_finds_dpkg_and_bash() -> None:
    backend = DpkgBackend()
    assert backend.available()
    packages = {p.name: p for p in backend.read_packages()}
    assert {"dpkg", "bash"} <= packages.keys()
    for name in ("dpkg", "bash"):
        assert packages[name].version[0].isdigit()
        assert packages[name].arch
    assert backend.stamp() == backend.stamp()
