"""Test the network collector with fake interfaces."""

from __future__ import annotations

import socket
from collections import namedtuple
from types import SimpleNamespace

from rmm_agent.collectors.network import NetworkCollector, format_address

from .helpers import check_output, value, values

NetIo = namedtuple(
    "NetIo", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout"
)
Stats = namedtuple("Stats", "isup duplex speed mtu flags")
Addr = namedtuple("Addr", "family address netmask broadcast ptp")
AF_LINK = 17


def fake_psutil() -> SimpleNamespace:
    io = {
        "lo": NetIo(100, 100, 1, 1, 0, 0, 0, 0),
        "eth0": NetIo(2000, 5000, 20, 50, 1, 2, 3, 4),
        "veth1a2b3c": NetIo(9, 9, 9, 9, 0, 0, 0, 0),
    }
    stats = {
        "lo": Stats(True, 0, 0, 65536, "up,loopback"),
        "eth0": Stats(True, 2, 1000, 1500, "up,broadcast"),
        "wlan0": Stats(False, 0, 0, 1500, "broadcast"),
        "veth1a2b3c": Stats(True, 2, 10000, 1500, "up"),
    }
    addrs = {
        "eth0": [
            Addr(socket.AF_INET, "192.168.1.20", "255.255.255.0", "192.168.1.255", None),
            Addr(socket.AF_INET6, "fe80::1%eth0", "ffff:ffff:ffff:ffff::", None, None),
            Addr(AF_LINK, "52:54:00:12:34:56", None, "ff:ff:ff:ff:ff:ff", None),
        ],
    }
    return SimpleNamespace(
        net_io_counters=lambda pernic=False: io,
        net_if_stats=lambda: stats,
        net_if_addrs=lambda: addrs,
        AF_LINK=AF_LINK,
    )


def test_counters_state_and_addresses() -> None:
    out = NetworkCollector(psutil_module=fake_psutil()).collect()
    assert value(out, "network_receive_bytes_total", interface="eth0") == 5000
    assert value(out, "network_transmit_drops_total", interface="eth0") == 4
    assert value(out, "network_speed_bytes", interface="eth0") == 125_000_000
    assert value(out, "network_up", interface="wlan0") == 0.0
    assert (("interface", "lo"),) not in values(out, "network_speed_bytes"), "0 means unknown"
    assert out.info["interfaces"]["eth0"] == {
        "mac": "52:54:00:12:34:56",
        "ipv4": ["192.168.1.20/24"],
        "ipv6": ["fe80::1/64"],
        "up": True,
    }
    check_output(NetworkCollector, out)


def test_container_interfaces_are_left_out() -> None:
    out = NetworkCollector(psutil_module=fake_psutil()).collect()
    assert "veth1a2b3c" not in out.info["interfaces"]
    assert all(s.labels["interface"] != "veth1a2b3c" for s in out.samples)
    everything = NetworkCollector(psutil_module=fake_psutil(), exclude=r"^$").collect()
    assert "veth1a2b3c" in everything.info["interfaces"]


def test_format_address() -> None:
    assert format_address("10.0.0.1", "255.0.0.0") == "10.0.0.1/8"
    assert format_address("fd00::2", "ffff:ffff:ffff:ffff::") == "fd00::2/64"
    assert format_address("10.0.0.1", None) == "10.0.0.1"
    assert format_address("10.0.0.1", "not a mask") == "10.0.0.1"
