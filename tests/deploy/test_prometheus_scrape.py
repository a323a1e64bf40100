"""Debian's real Prometheus scrapes a real server with a real agent reporting to it."""

from __future__ import annotations

from tests.deploy.stack import SERVER_JOB, Stack
from tests.helpers import wait_for


def test_prometheus_sees_the_server_and_the_agent(stack: Stack) -> None:
    prometheus = stack.prometheus
    up = wait_for(
        lambda: [s for s in prometheus.vector(f'up{{job="{SERVER_JOB}"}}') if s["value"][1] == "1"],
        60,
        f'up{{job="{SERVER_JOB}"}} == 1 in Prometheus',
        every=0.5,
    )
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{stack.server.http_port}"

    selector = f'rmm_cpu_usage_ratio{{job="{SERVER_JOB}", agent="{stack.agent_id}"}}'
    (cpu,) = wait_for(lambda: prometheus.vector(selector), 60, selector, every=0.5)
    assert cpu["metric"]["client"] == "acme" and cpu["metric"]["site"] == "hq"
    assert 0 <= float(cpu["value"][1]) <= 1

    (online,) = wait_for(
        lambda: prometheus.vector('rmm_agents{client="acme", status="online"}'), 60, "rmm_agents"
    )
    assert online["value"][1] == "1"


def test_prometheus_evaluates_the_shipped_rules(stack: Stack) -> None:
    """The shipped recording rules load into a real Prometheus and produce series."""
    prometheus = stack.prometheus
    (ratio,) = wait_for(
        lambda: prometheus.vector('client:rmm_agents_offline:ratio{client="acme"}'),
        60,
        "the recording rule client:rmm_agents_offline:ratio",
        every=0.5,
    )
    assert ratio["value"][1] == "0"  # the one agent is online
    (received,) = wait_for(
        lambda: prometheus.vector("job:rmm_server_reports_received:rate5m > 0"),
        60,
        "reports received per second, recorded",
        every=0.5,
    )
    assert received["metric"]["job"] == SERVER_JOB
    firing = prometheus.vector('ALERTS{alertstate="firing", alertname=~"RmmServer.*"}')
    assert firing == [], firing
