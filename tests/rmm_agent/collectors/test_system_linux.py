"""Test the Linux readers of OS identity, containers and pending reboots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rmm_agent.collectors.system_linux import (
    check_needs_restarting,
    detect_container,
    detect_virt_command,
    os_family,
    parse_cgroup_container,
    parse_needs_restarting,
    parse_os_release,
    read_os_release,
    read_reboot_flag,
)

from .helpers import FakeStatusRunner, fixture_text, write_tree


@pytest.mark.parametrize(
    ("fixture", "name", "version_id", "family"),
    [
        ("os-release_debian12.txt", "Debian GNU/Linux", "12", {"debian"}),
        ("os-release_ubuntu2204.txt", "Ubuntu", "22.04", {"ubuntu", "debian"}),
        ("os-release_rhel9.txt", "Red Hat Enterprise Linux", "9.3", {"rhel", "fedora"}),
        ("os-release_arch.txt", "Arch Linux", None, {"arch"}),
    ],
)
def test_parse_os_release(
    fixture: str, name: str, version_id: str | None, family: set[str]
) -> None:
    release = parse_os_release(fixture_text(fixture))
    assert release["NAME"] == name
    assert release.get("VERSION_ID") == version_id
    assert os_family(release) == family


def test_parse_os_release_quoting_and_comments() -> None:
    text = '# comment\nNAME=\'My OS\'\nVERSION="1 (with \\"quotes\\")"\nBROKEN="open\nID=x\n'
    release = parse_os_release(text)
    assert release == {"NAME": "My OS", "VERSION": '1 (with "quotes")', "BROKEN": "open", "ID": "x"}


def test_read_os_release_falls_back_to_usr_lib(tmp_path: Path) -> None:
    write_tree(tmp_path, {"usr/lib/os-release": 'NAME="Fallback"\n'})
    assert read_os_release(tmp_path) == {"NAME": "Fallback"}
    assert read_os_release(tmp_path / "empty") == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12:pids:/docker/3f2a9c\n0::/docker/3f2a9c\n", "docker"),
        ("0::/system.slice/docker-3f2a9c.scope\n", "docker"),
        ("0::/machine.slice/libpod-7bd1.scope/container\n", "podman"),
        ("0::/lxc.payload.web01\n", "lxc"),
        ("0::/kubepods/besteffort/pod1234/abcd\n", "container-other"),
        ("0::/init.scope\n", None),
    ],
)
def test_parse_cgroup_container(text: str, expected: str | None) -> None:
    assert parse_cgroup_container(text) == expected


def test_recorded_namespaced_cgroup_shows_no_container() -> None:
    # Inside a cgroup namespace every path is "/": the marker files must tell.
    assert parse_cgroup_container(fixture_text("proc_1_cgroup_docker_namespaced.txt")) is None


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({".dockerenv": ""}, "docker"),
        ({"run/.containerenv": ""}, "podman"),
        ({"run/systemd/container": "lxc\n"}, "lxc"),
        ({"proc/1/cgroup": "0::/docker/abc\n"}, "docker"),
        ({"proc/sys/kernel/osrelease": "5.15.146.1-microsoft-standard-WSL2\n"}, "wsl"),
        ({"proc/1/cgroup": "0::/init.scope\n"}, None),
    ],
)
def test_detect_container(tmp_path: Path, files: dict[str, str], expected: str | None) -> None:
    assert detect_container(write_tree(tmp_path, files)) == expected


def test_detect_virt_command() -> None:
    assert detect_virt_command(FakeStatusRunner({("systemd-detect-virt",): (0, "kvm\n")})) == "kvm"
    # On bare metal it prints "none" and exits 1: an answer, not a failure.
    bare = FakeStatusRunner({("systemd-detect-virt",): (1, "none\n")})
    assert detect_virt_command(bare) == "none"
    assert detect_virt_command(FakeStatusRunner({})) is None


def test_reboot_flag_with_its_time_and_packages(tmp_path: Path) -> None:
    assert read_reboot_flag(tmp_path) is None
    write_tree(
        tmp_path,
        {
            "run/reboot-required": "*** System restart required ***\n",
            "run/reboot-required.pkgs": "linux-image-6.1.0-18-amd64\nlibc6\nlibc6\n",
        },
    )
    os.utime(tmp_path / "run/reboot-required", (1_700_000_000, 1_700_000_000))
    assert read_reboot_flag(tmp_path) == (1_700_000_000, ["libc6", "linux-image-6.1.0-18-amd64"])


def test_parse_needs_restarting() -> None:
    assert parse_needs_restarting(1, fixture_text("needs-restarting-r_required.txt")) == (
        True,
        ["kernel", "systemd"],
    )
    assert parse_needs_restarting(0, fixture_text("needs-restarting-r_not-required.txt")) == (
        False,
        [],
    )
    assert (
        parse_needs_restarting(1, "Error: This command has to be run with superuser privileges")
        is None
    )


def test_needs_restarting_missing() -> None:
    assert check_needs_restarting(FakeStatusRunner({})) is None
