"""Test the software collector: backend choice and re-reading only on change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rmm_agent.collectors._packages import Package
from rmm_agent.collectors.software import SoftwareCollector, default_backends
from rmm_agent.collectors.software_dpkg import DPKG_FORMAT, DpkgBackend

from .helpers import FakeRunner, check_output, fixture_text, value

QUERY = ("dpkg-query", "-W", f"-f={DPKG_FORMAT}")


class FakeBackend:
    def __init__(self, name: str, available: bool, packages: list[Package]) -> None:
        self.name = name
        self._available = available
        self.packages = packages
        self.reads = 0
        self.version = 0

    def available(self) -> bool:
        return self._available

    def stamp(self) -> object:
        return self.version

    def read_packages(self) -> list[Package]:
        self.reads += 1
        return self.packages


def test_first_available_backend_is_chosen() -> None:
    missing = FakeBackend("dpkg", False, [])
    rpm = FakeBackend("rpm", True, [Package("bash", "5.1.8-6.el9_1", "x86_64")])
    later = FakeBackend("other", True, [])
    out = SoftwareCollector(backends=[missing, rpm, later]).collect()
    assert out.info == {
        "backend": "rpm",
        "packages": [{"name": "bash", "version": "5.1.8-6.el9_1", "arch": "x86_64"}],
    }
    assert value(out, "software_packages", backend="rpm") == 1
    assert missing.reads == later.reads == 0
    check_output(SoftwareCollector, out)


def test_no_backend_is_not_an_error() -> None:
    out = SoftwareCollector(backends=[FakeBackend("dpkg", False, [])], platform="linux").collect()
    assert out.samples == []
    assert out.info == {
        "available": False,
        "reason": "no package database found on linux (tried: dpkg)",
    }


@pytest.mark.parametrize(
    ("platform", "names"),
    [
        ("linux", ["dpkg", "rpm"]),
        ("win32", ["windows-registry"]),
        ("darwin", ["pkgutil", "brew"]),
        ("freebsd14", []),
    ],
)
def test_default_backends_per_os(platform: str, names: list[str]) -> None:
    assert [b.name for b in default_backends(platform, FakeRunner({}))] == names


def test_dpkg_is_reread_only_when_its_status_file_changes(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Package: bash\n")
    os.utime(status, ns=(1_700_000_000_000_000_000,) * 2)
    runner = FakeRunner({QUERY: fixture_text("dpkg-query_debian12.txt")})
    dpkg = DpkgBackend(runner=runner, status_file=status, which=lambda _: "/usr/bin/dpkg-query")
    collector = SoftwareCollector(backends=[dpkg])

    first = collector.collect()
    for _ in range(3):
        assert collector.collect().info == first.info
    assert len(runner.calls) == 1

    runner.answers[QUERY] = "install ok installed\tbash\t5.2.21-2\tamd64\n"
    os.utime(status, ns=(1_700_000_100_000_000_000,) * 2)  # apt upgraded something
    changed = collector.collect()
    assert len(runner.calls) == 2
    assert changed.info["packages"] == [{"name": "bash", "version": "5.2.21-2", "arch": "amd64"}]
    assert value(changed, "software_packages", backend="dpkg") == 1
    collector.collect()
    assert len(runner.calls) == 2


def test_switching_backend_rereads_even_with_an_equal_stamp() -> None:
    a = FakeBackend("a", True, [Package("x", "1")])
    b = FakeBackend("b", True, [Package("y", "2")])
    collector = SoftwareCollector(backends=[a, b])
    collector.collect()
    a._available = False
    assert collector.collect().info["backend"] == "b"
    assert b.reads == 1
