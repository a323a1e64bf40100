"""Test the ubuntu-drivers backend on recorded `ubuntu-drivers devices` (Ubuntu 22.04)."""

from __future__ import annotations

from rmm_agent.patching.apt import DPKG_QUERY
from rmm_agent.patching.base import INSTALLED
from rmm_agent.patching.ubuntu_drivers import DEVICES, UbuntuDriversBackend, parse_devices

from .helpers import FakeRunner, fixture_text, found, ok

LISTED = fixture_text("ubuntu-drivers_devices_ubuntu2204.txt")


def test_parse_recommended_drivers_only() -> None:
    assert parse_devices(LISTED) == [
        ("nvidia-driver-535", "NVIDIA Corporation GP107 [GeForce GTX 1050 Ti]",
         "distro non-free recommended"),
        ("bcmwl-kernel-source",
         "Broadcom Inc. and subsidiaries BCM4352 802.11ac Wireless Network Adapter",
         "distro non-free recommended"),
    ]  # fmt: skip


def test_installed_recommendations_are_not_pending_and_install_uses_apt() -> None:
    query = (*DPKG_QUERY, "nvidia-driver-535", "bcmwl-kernel-source")
    install = (
        "env", "DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_MODE=a",
        "APT_LISTCHANGES_FRONTEND=none", "apt-get", "install", "-y", "-q",
        "-o", "DPkg::Lock::Timeout=0", "-o", "Dpkg::Options::=--force-confdef",
        "-o", "Dpkg::Options::=--force-confold", "nvidia-driver-535",
    )  # fmt: skip
    runner = FakeRunner(
        {
            DEVICES: ok(LISTED),
            query: [
                (1, "bcmwl-kernel-source:amd64\t6.30.223.271-17\tii \n", ""),
                (1, "bcmwl-kernel-source:amd64\t6.30.223.271-17\tii \n", ""),
                ok("bcmwl-kernel-source:amd64\t6.30.223.271-17\tii \n"
                   "nvidia-driver-535:amd64\t535.183.01-0ubuntu0.22.04.1\tii \n"),
            ],
            install: ok(),
        }
    )  # fmt: skip
    backend = UbuntuDriversBackend(runner=runner, which=found)
    pending = backend.read_updates()
    assert [(u.id, u.classification, u.reboot_required) for u in pending] == [
        ("ubuntu-drivers:nvidia-driver-535", "driver", True)
    ]
    [outcome] = backend.install(["ubuntu-drivers:nvidia-driver-535"], 1800)
    assert (outcome.status, outcome.reboot_required) == (INSTALLED, True)
