"""Test the system collector: identity keys, uptime, users, virtualization, pending reboot."""

from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest

from rmm_agent.collectors.system import SystemCollector, classify_dmi, normalize_arch, os_key

from .fake_winreg import FakeWinreg, load_reg
from .helpers import (
    FakeClock,
    FakeStatusRunner,
    check_output,
    fixture_path,
    fixture_text,
    value,
    values,
    write_tree,
)

User = namedtuple("User", "name terminal host started pid")
REQUIRED_INFO = ("hostname", "os", "os_name", "os_version", "kernel", "arch")
NEEDS_RESTARTING = ("needs-restarting", "-r")
DETECT_VIRT = ("systemd-detect-virt",)


def fake_psutil() -> SimpleNamespace:
    return SimpleNamespace(
        boot_time=lambda: 1_700_000_000.0,
        users=lambda: [
            User("alice", "pts/0", "10.0.0.5", 1_700_000_100.0, 4242),
            User("alice", "pts/1", "10.0.0.5", 1_700_000_200.0, 4343),
        ],
    )


def linux_root(tmp_path: Path, os_release: str, **extra: str) -> Path:
    return write_tree(tmp_path, {"etc/os-release": fixture_text(os_release), **extra})


def test_debian_identity_uptime_users_and_no_reboot(tmp_path: Path) -> None:
    collector = SystemCollector(
        psutil_module=fake_psutil(),
        root=linux_root(tmp_path, "os-release_debian12.txt"),
        platform_name="linux",
        status_runner=FakeStatusRunner({DETECT_VIRT: (0, "kvm\n")}),
        clock=FakeClock(1_700_003_600.0),
    )
    out = collector.collect()
    for key in REQUIRED_INFO:
        assert out.info[key], key
    assert out.info["os"] == "linux"
    assert out.info["os_name"] == "Debian GNU/Linux"
    assert out.info["os_version"] == "12"
    assert out.info["virtualization"] == "kvm"
    assert [u["terminal"] for u in out.info["users"]] == ["pts/0", "pts/1"]
    assert value(out, "system_uptime_seconds") == 3600.0
    assert value(out, "system_boot_time_seconds") == 1_700_000_000.0
    assert value(out, "system_users") == 2
    assert value(out, "system_reboot_required") == 0.0
    assert out.info["os_pretty_name"] == "Debian GNU/Linux 12 (bookworm)"
    check_output(SystemCollector, out)


def test_debian_reboot_flag_and_when_it_appeared(tmp_path: Path) -> None:
    root = linux_root(
        tmp_path,
        "os-release_ubuntu2204.txt",
        **{"var/run/reboot-required": "", "var/run/reboot-required.pkgs": "libc6\n"},
    )
    os.utime(root / "var/run/reboot-required", (1_700_100_000, 1_700_100_000))
    out = SystemCollector(
        psutil_module=fake_psutil(),
        root=root,
        platform_name="linux",
        status_runner=FakeStatusRunner({}),
    ).collect()
    assert value(out, "system_reboot_required") == 1.0
    assert value(out, "system_reboot_required_time_seconds") == 1_700_100_000
    assert out.info["reboot_reasons"] == ["libc6"]


def test_rhel_asks_needs_restarting_rarely_and_dates_the_reboot(tmp_path: Path) -> None:
    runner = FakeStatusRunner(
        {
            NEEDS_RESTARTING: (1, fixture_text("needs-restarting-r_required.txt")),
            DETECT_VIRT: (1, "none\n"),
        }
    )
    clock, monotonic = FakeClock(1_700_050_000.0), FakeClock(0.0)
    collector = SystemCollector(
        psutil_module=fake_psutil(),
        root=linux_root(tmp_path, "os-release_rhel9.txt"),
        platform_name="linux",
        status_runner=runner,
        clock=clock,
        monotonic=monotonic,
        reboot_check_seconds=3600,
    )
    first = collector.collect()
    assert value(first, "system_reboot_required") == 1.0
    assert value(first, "system_reboot_required_time_seconds") == 1_700_050_000.0
    assert first.info["reboot_reasons"] == ["kernel", "systemd"]
    assert first.info["virtualization"] == "none"

    clock.advance(1800)
    monotonic.advance(1800)
    collector.collect()
    assert runner.calls.count(NEEDS_RESTARTING) == 1, "not re-run within reboot_check_seconds"
    assert runner.calls.count(DETECT_VIRT) == 1, "virtualization is detected once"

    clock.advance(1800)
    monotonic.advance(1800)
    third = collector.collect()
    assert runner.calls.count(NEEDS_RESTARTING) == 2
    # Still pending: the time it was first seen stays.
    assert value(third, "system_reboot_required_time_seconds") == 1_700_050_000.0

    runner.answers[NEEDS_RESTARTING] = (0, fixture_text("needs-restarting-r_not-required.txt"))
    monotonic.advance(3600)
    fourth = collector.collect()
    assert value(fourth, "system_reboot_required") == 0.0
    assert values(fourth, "system_reboot_required_time_seconds") == {}


def test_unknown_reboot_state_is_left_out(tmp_path: Path) -> None:
    out = SystemCollector(
        psutil_module=fake_psutil(),
        root=linux_root(tmp_path, "os-release_arch.txt"),
        platform_name="linux",
        status_runner=FakeStatusRunner({}),
    ).collect()
    assert values(out, "system_reboot_required") == {}
    assert out.info["reboot_required"] is None
    assert out.info["os_version"] == "rolling"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({".dockerenv": ""}, "docker"),
        (
            {
                "sys/class/dmi/id/product_name": "VirtualBox\n",
                "sys/class/dmi/id/sys_vendor": "innotek GmbH\n",
            },
            "oracle",
        ),
        (
            {
                "sys/class/dmi/id/product_name": "Virtual Machine\n",
                "sys/class/dmi/id/sys_vendor": "Microsoft Corporation\n",
            },
            "microsoft",
        ),
        ({"proc/cpuinfo": fixture_text("cpuinfo_x86_64_debian12.txt")}, "vm"),
        (
            {
                "proc/cpuinfo": fixture_text("cpuinfo_aarch64_raspberrypi4.txt"),
                "sys/class/dmi/id/product_name": "To Be Filled By O.E.M.\n",
            },
            "none",
        ),
    ],
)
def test_virtualization_without_systemd_detect_virt(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    root = linux_root(tmp_path, "os-release_debian12.txt", **files)
    out = SystemCollector(
        psutil_module=fake_psutil(),
        root=root,
        platform_name="linux",
        status_runner=FakeStatusRunner({}),
    ).collect()
    assert out.info["virtualization"] == expected


def test_windows_identity_and_pending_reboot() -> None:
    reg = FakeWinreg(load_reg(fixture_path("windows_system.reg")))
    out = SystemCollector(
        psutil_module=fake_psutil(),
        platform_name="win32",
        winreg_module=reg,
        clock=FakeClock(1_712_000_000.0),
    ).collect()
    assert out.info["os"] == "windows"
    assert out.info["os_name"] == "Windows 11 Pro"
    assert out.info["os_version"] == "10.0.22631.3349"
    assert out.info["os_release"] == "23H2"
    assert out.info["virtualization"] == "none"
    assert value(out, "system_reboot_required") == 1.0
    assert value(out, "system_reboot_required_time_seconds") == pytest.approx(1711929600.0)
    check_output(SystemCollector, out)


def test_helpers() -> None:
    assert classify_dmi(["KVM", "Red Hat"]) == "kvm"
    assert classify_dmi(["Surface Laptop 5", "Microsoft Corporation"]) is None
    assert classify_dmi([None, "Dell Inc."]) is None
    assert (os_key("linux"), os_key("win32"), os_key("darwin")) == ("linux", "windows", "macos")
    assert (normalize_arch("AMD64"), normalize_arch("arm64"), normalize_arch("x86_64")) == (
        "x86_64",
        "aarch64",
        "x86_64",
    )


@pytest.mark.linux
def test_real_host_identity() -> None:
    out = SystemCollector().collect()
    for key in REQUIRED_INFO:
        assert isinstance(out.info[key], str) and out.info[key], key
    assert out.info["os"] == "linux"
    assert out.info["os_name"] == parse_name(Path("/etc/os-release").read_text())
    assert value(out, "system_uptime_seconds") > 0
    check_output(SystemCollector, out)


def parse_name(text: str) -> str:
    line = next(line for line in text.splitlines() if line.startswith("NAME="))
    return line.split("=", 1)[1].strip('"')
