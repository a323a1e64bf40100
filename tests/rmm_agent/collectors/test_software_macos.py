"""Test the macOS backends: pkgutil on recorded output, Homebrew on a fake Cellar."""

from __future__ import annotations

from pathlib import Path

from rmm_agent.collectors._packages import Package
from rmm_agent.collectors.base import CommandError
from rmm_agent.collectors.software_macos import (
    BrewBackend,
    PkgutilBackend,
    parse_pkgutil_info,
    parse_pkgutil_pkgs,
)

from .helpers import FIXTURES, FakeRunner, fixture_text


def pkgutil_runner() -> FakeRunner:
    answers: dict[tuple[str, ...], str | Exception] = {
        ("pkgutil", "--pkgs"): fixture_text("pkgutil_pkgs_macos14.txt")
    }
    for info in (FIXTURES / "pkgutil_pkg-info").iterdir():
        answers[("pkgutil", "--pkg-info", info.stem)] = info.read_text()
    # A receipt forgotten between the two commands.
    answers[("pkgutil", "--pkg-info", "com.zoom.pkg.videomeeting")] = CommandError(
        "pkgutil --pkg-info com.zoom.pkg.videomeeting: exited 1: No receipt"
    )
    return FakeRunner(answers)


def test_parse_pkgutil() -> None:
    ids = parse_pkgutil_pkgs(fixture_text("pkgutil_pkgs_macos14.txt"))
    assert len(ids) == 9 and ids[0] == "com.apple.pkg.CLTools_Executables"
    word = parse_pkgutil_info(fixture_text("pkgutil_pkg-info/com.microsoft.Word.txt"))
    assert word == Package("com.microsoft.Word", "16.83.24031120", None)
    assert parse_pkgutil_info("garbage") is None


def test_pkgutil_backend(tmp_path: Path) -> None:
    (tmp_path / "com.microsoft.Word.plist").write_bytes(b"")
    backend = PkgutilBackend(
        runner=pkgutil_runner(), receipts_dir=tmp_path, which=lambda _: "/usr/sbin/pkgutil"
    )
    assert backend.available()
    packages = backend.read_packages()
    assert len(packages) == 8
    assert Package("org.python.Python.PythonFramework-3.12", "3.12.2", None) in packages
    before = backend.stamp()
    (tmp_path / "com.zoom.pkg.videomeeting.plist").write_bytes(b"")
    assert backend.stamp() != before


def test_brew_backend_reads_the_cellar(tmp_path: Path) -> None:
    for version_dir in (
        "Cellar/git/2.44.0",
        "Cellar/git/2.43.0",
        "Cellar/wget/1.24.5",
        "Caskroom/firefox/124.0.2",
        "Caskroom/firefox/.metadata",
    ):
        (tmp_path / version_dir).mkdir(parents=True)
    backend = BrewBackend(prefixes=(tmp_path, tmp_path / "absent"))
    assert backend.available()
    assert backend.read_packages() == [
        Package("firefox", "124.0.2"),
        Package("git", "2.43.0"),
        Package("git", "2.44.0"),
        Package("wget", "1.24.5"),
    ]
    before = backend.stamp()
    (tmp_path / "Cellar/wget/1.25.0").mkdir()
    assert backend.stamp() != before
    assert not BrewBackend(prefixes=(tmp_path / "absent",)).available()
