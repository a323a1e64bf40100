"""Turn a report from `rmm-agent collect --once --output json` into policy inputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rmm_common.errors import InvalidArgument
from rmm_server.policy.model import AgentContext, SeriesSample


def report_json_to_context(
    report: Mapping[str, Any],
    *,
    agent_id: str = "",
    client: str = "",
    site: str = "",
    tags: Iterable[str] = (),
    interval_seconds: float = 60.0,
    seconds_since_report: float | None = 0.0,
) -> tuple[AgentContext, list[SeriesSample]]:
    """Return the agent context and samples of one JSON report (as `collect --output json`).

    A report carries no client, site or tags (the server knows them): pass them in.
    """
    host = report.get("host")
    collectors = report.get("collectors")
    if not isinstance(host, Mapping) or not isinstance(collectors, list):
        raise InvalidArgument(
            "not an agent report: expected 'host' and 'collectors' keys "
            "(produce one with `rmm-agent collect --once --output json`)"
        )
    samples: list[SeriesSample] = []
    info: dict[str, Any] = {}
    for collector in collectors:
        name = str(collector.get("name", ""))
        if collector.get("info"):
            info[name] = collector["info"]
        for sample in collector.get("samples") or ():
            samples.append(
                SeriesSample(
                    name=str(sample["name"]),
                    labels={str(k): str(v) for k, v in (sample.get("labels") or {}).items()},
                    value=float(sample["value"]),
                )
            )
    hostname = str(host.get("hostname", ""))
    context = AgentContext(
        agent_id=agent_id or hostname,
        hostname=hostname,
        client=client,
        site=site,
        tags=frozenset(tags),
        os=str(host.get("os", "")),
        interval_seconds=interval_seconds,
        seconds_since_report=seconds_since_report,
        info=info,
    )
    return context, samples
