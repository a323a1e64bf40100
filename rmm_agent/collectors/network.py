"""Collect per-interface network traffic, errors, link state, speed and addresses."""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from typing import Any, ClassVar

import psutil

from rmm_agent.collectors._common import PsutilModule
from rmm_agent.collectors.base import CollectorOutput, Sample
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec

log = logging.getLogger(__name__)

# Container and pod interfaces (Docker's veth pairs, Calico's cali*) come and go with every
# container: as label values they would be unbounded, so they are left out by default.
DEFAULT_EXCLUDE = r"^(veth|cali)"

_COUNTERS = (
    ("network_receive_bytes_total", "bytes_recv"),
    ("network_transmit_bytes_total", "bytes_sent"),
    ("network_receive_packets_total", "packets_recv"),
    ("network_transmit_packets_total", "packets_sent"),
    ("network_receive_errors_total", "errin"),
    ("network_transmit_errors_total", "errout"),
    ("network_receive_drops_total", "dropin"),
    ("network_transmit_drops_total", "dropout"),
)


def format_address(address: str, netmask: str | None) -> str:
    """Return an IP address in CIDR form (without an IPv6 zone), or as given without a mask."""
    address = address.split("%", 1)[0]
    if not netmask:
        return address
    try:
        # ipaddress accepts no IPv6 mask in address form, so count the mask's bits directly.
        prefix = bin(int(ipaddress.ip_address(netmask))).count("1")
    except ValueError:
        return address
    return f"{address}/{prefix}"


def interface_addresses(addrs: Iterable[Any], link_family: int) -> dict[str, Any]:
    """Group one interface's psutil addresses into mac, ipv4 and ipv6."""
    result: dict[str, Any] = {"mac": None, "ipv4": [], "ipv6": []}
    for addr in addrs:
        if addr.family == link_family:
            result["mac"] = addr.address
        elif addr.family == socket.AF_INET:
            result["ipv4"].append(format_address(addr.address, addr.netmask))
        elif addr.family == socket.AF_INET6:
            result["ipv6"].append(format_address(addr.address, addr.netmask))
    return result


class NetworkCollector:
    """Report traffic counters and link state per interface; addresses go in info."""

    name: ClassVar[str] = "network"
    inventory: ClassVar[bool] = False
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.NETWORK

    def __init__(
        self, *, psutil_module: PsutilModule = psutil, exclude: str = DEFAULT_EXCLUDE
    ) -> None:
        self._psutil = psutil_module
        self._exclude = re.compile(exclude)

    def collect(self) -> CollectorOutput:
        """Read counters, link state and addresses of every interface not excluded."""
        ps = self._psutil
        io = ps.net_io_counters(pernic=True)
        stats = ps.net_if_stats()
        addrs = ps.net_if_addrs()
        samples: list[Sample] = []
        interfaces: dict[str, Any] = {}
        for nic in sorted(set(io) | set(stats)):
            if self._exclude.match(nic):
                continue
            labels = {"interface": nic}
            if nic in io:
                counters = io[nic]
                samples.extend(
                    Sample(metric, float(getattr(counters, field)), dict(labels))
                    for metric, field in _COUNTERS
                )
            details = interface_addresses(addrs.get(nic, ()), ps.AF_LINK)
            if nic in stats:
                st = stats[nic]
                samples.append(Sample("network_up", 1.0 if st.isup else 0.0, dict(labels)))
                # psutil gives Mbit/s, 0 when unknown (virtual NICs, Wi-Fi on some drivers).
                if st.speed > 0:
                    speed = st.speed * 1e6 / 8
                    samples.append(Sample("network_speed_bytes", speed, dict(labels)))
                if st.mtu > 0:
                    samples.append(Sample("network_mtu_bytes", float(st.mtu), dict(labels)))
                details["up"] = bool(st.isup)
            interfaces[nic] = details
        if not interfaces:
            log.debug("network: no interfaces to report")
        return CollectorOutput(samples=samples, info={"interfaces": interfaces})
