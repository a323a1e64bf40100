"""Prometheus exposition of the fleet, rendered from current state at scrape time.

Each agent's series are turned into text once, when its report arrives (exposition.py: a dict of
family name to lines, which the fleet keeps beside the agent's record); a scrape only groups those
cached fragments by family and adds the series that depend on the clock (up, seconds since last
report). A removed agent's fragments go with it, so its series disappear from the next scrape.
Server internals come from a prometheus_client registry.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest

from rmm_common.metric_catalog import catalog
from rmm_server.exposition import PREFIX, agent_label_prefix, escape_label_value, format_value

if TYPE_CHECKING:
    from rmm_server.cluster import Export
    from rmm_server.fleet import Fleet

# Series the server derives for every agent, beside what the agent reported.
DERIVED_FAMILIES: dict[str, tuple[str, str]] = {
    "rmm_agent_up": ("gauge", "1 when the agent reported within its last 3 intervals, else 0."),
    "rmm_agent_last_report_timestamp_seconds": (
        "gauge",
        "Unix time the server received the agent's latest report.",
    ),
    "rmm_agent_info": (
        "gauge",
        "Always 1; labels carry the agent's hostname, OS and agent version.",
    ),
    "rmm_agent_collector_success": (
        "gauge",
        "1 when the collector succeeded in the agent's latest report, else 0.",
    ),
    "rmm_agent_collector_duration_seconds": (
        "gauge",
        "Time the collector took in the agent's latest report.",
    ),
    "rmm_agent_report_interval_seconds": ("gauge", "The agent's report interval."),
    "rmm_agent_reports_dropped_total": (
        "counter",
        "Reports the agent dropped undelivered because its spool was full, since it enrolled.",
    ),
    "rmm_agent_exporter_series_dropped": (
        "gauge",
        "Series of the agent's latest report left out of /metrics: over the exporter's "
        "per-agent budget of series or bytes.",
    ),
    "rmm_agents": ("gauge", "Agents known to this server, by client, site and status."),
}


@lru_cache(maxsize=1)
def _catalog() -> dict[str, tuple[str, str]]:
    return {PREFIX + name: (spec.kind, spec.help) for name, spec in catalog().items()}


def family_metadata(family: str) -> tuple[str, str]:
    """Return (type, help) for an exported family name."""
    known = DERIVED_FAMILIES.get(family) or _catalog().get(family)
    if known:
        return known
    kind = "counter" if family.endswith("_total") else "gauge"
    return kind, "Reported by the agent; not in this server's metric catalog."


class MetricsRenderer:
    """Render the whole /metrics page: the fleet's cached fragments plus server internals."""

    def __init__(
        self,
        fleet: Fleet,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        export_of: Callable[[str], Export] | None = None,
    ) -> None:
        self.fleet = fleet
        self.registry = registry
        self.clock = clock
        # With replicas, each agent is shown by one of them only (cluster.Export): Prometheus
        # scrapes them all and counts each agent once.
        self.export_of = export_of

    def render(self) -> bytes:
        """Return the exposition text of everything this server knows now."""
        now = self.clock()
        by_family: dict[str, list[str]] = defaultdict(list)
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for state in self.fleet.snapshot():
            record = state.record
            scope = 2 if self.export_of is None else int(self.export_of(record.id))
            if not scope:
                continue
            online = record.online(now)
            counts[(record.client, record.site, "online" if online else "offline")] += 1
            prefix = agent_label_prefix(record)
            by_family["rmm_agent_up"].append(f"rmm_agent_up{{{prefix}}} {int(online)}\n")
            if record.last_seen is not None:
                by_family["rmm_agent_last_report_timestamp_seconds"].append(
                    f"rmm_agent_last_report_timestamp_seconds{{{prefix}}} "
                    f"{format_value(record.last_seen)}\n"
                )
            if scope < 2:  # another replica had its reports: samples here would be stale
                continue
            for family, text in state.fragments.items():
                by_family[family].append(text)
        for (client, site, status), count in counts.items():
            labels = (
                f'client="{escape_label_value(client)}",site="{escape_label_value(site)}",'
                f'status="{status}"'
            )
            by_family["rmm_agents"].append(f"rmm_agents{{{labels}}} {count}\n")
        parts: list[str] = []
        for family in sorted(by_family):
            kind, help_text = family_metadata(family)
            parts.append(f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n")
            parts.extend(by_family[family])
        return "".join(parts).encode("utf-8") + generate_latest(self.registry)
