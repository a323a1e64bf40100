"""Every Grafana dashboard is well formed, and each PromQL expression in it parses in a real
Prometheus and names only metrics the real exporter produces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from rmm_common.metric_catalog import catalog
from tests.deploy.promql import (
    PROMETHEUS_BUILTINS,
    DashboardQuery,
    dashboard_queries,
    exposition_names,
    metric_names,
    substitute,
    variable_expression,
)
from tests.deploy.stack import DASHBOARDS_DIR, DEPLOY, PROMETHEUS_DIR, Stack
from tests.helpers import wait_for

DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))
EXPECTED = {"fleet-overview", "client-site", "agent", "patch-compliance", "server-health"}

# Families an agent exports only where the host has the thing: sensors, a failed unit, a
# pending reboot, a package manager that answered within the collector timeout and knows
# publication dates. This machine may lack them, so the exporter's output here cannot vouch
# for them; each must at least be in the agent's metric catalog (checked below), so a rename
# fails. Whatever this host does export is checked against the real output all the same.
HOST_DEPENDENT = frozenset(
    {
        "rmm_sensor_temperature_celsius",
        "rmm_service_failed",
        "rmm_system_reboot_required_time_seconds",
        "rmm_patches_pending",
        "rmm_patches_pending_oldest_age_seconds",
        "rmm_patches_lists_age_seconds",
    }
)


def _datasource_uid() -> str:
    provisioning = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    (source,) = yaml.safe_load(provisioning.read_text())["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


def _recorded_names() -> set[str]:
    names: set[str] = set()
    for path in (PROMETHEUS_DIR / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


def _all_queries() -> list[DashboardQuery]:
    return [query for path in DASHBOARDS for query in dashboard_queries(path)]


def _datasources(node: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append(value)
            else:
                found.extend(_datasources(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_datasources(item))
    return found


def test_the_five_dashboards_exist() -> None:
    assert {path.stem for path in DASHBOARDS} == EXPECTED


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboard_is_well_formed(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == "rmm-" + path.stem
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["title"].startswith("RMM / ")
    assert "id" not in dashboard or dashboard["id"] is None, "provisioned dashboards carry no id"
    uid = _datasource_uid()
    for source in _datasources(dashboard):
        if source.get("type") == "grafana":
            continue  # the built-in annotations source
        assert source == {"type": "prometheus", "uid": uid}, source
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']!r} has no query"
    assert dashboard_queries(path), "no PromQL found"


def test_metric_name_extraction() -> None:
    """The extractor itself: functions, labels, durations and strings are not metric names."""
    expr = (
        'topk(10, max by (client, agent) (rate(rmm_network_receive_bytes_total{client=~"a|b",'
        ' site="x{y}"}[5m] offset 1h)) * on (agent) group_left (hostname) rmm_agent_info)'
        " > bool 1e3 and on () up"
    )
    assert metric_names(expr) == {"rmm_network_receive_bytes_total", "rmm_agent_info", "up"}
    assert metric_names("job:rmm_agents:sum / scalar(vector(1))") == {"job:rmm_agents:sum"}
    assert exposition_names('# TYPE a_seconds histogram\n# TYPE b_total counter\nc{x="1"} 2\n') == {
        "a_seconds_bucket",
        "a_seconds_sum",
        "a_seconds_count",
        "b_total",
        "c",
    }
    assert variable_expression('label_values(rmm_agents{client="$c"}, site)') == (
        'rmm_agents{client="$c"}'
    )
    assert variable_expression("label_values(client)") is None


def test_host_dependent_names_are_in_the_agent_catalog() -> None:
    known = {"rmm_" + name for name in catalog()}
    assert known >= HOST_DEPENDENT, HOST_DEPENDENT - known


def test_expressions_name_only_exported_metrics(stack: Stack) -> None:
    exported = exposition_names(stack.server.metrics())
    assert "rmm_cpu_usage_ratio" in exported and "rmm_notifications_failed_total" in exported
    allowed = exported | HOST_DEPENDENT | PROMETHEUS_BUILTINS | _recorded_names()
    unknown = [
        f"{query}: {sorted(metric_names(query.expr) - allowed)}"
        for query in _all_queries()
        if metric_names(query.expr) - allowed
    ]
    assert not unknown, "metrics the exporter does not produce:\n" + "\n".join(unknown)


def test_recording_rules_name_only_exported_metrics(stack: Stack) -> None:
    allowed = exposition_names(stack.server.metrics()) | PROMETHEUS_BUILTINS | _recorded_names()
    for path in (PROMETHEUS_DIR / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                unknown = metric_names(rule["expr"]) - allowed
                assert not unknown, f"{path.name}: {rule}: {sorted(unknown)}"


def test_expressions_run_in_prometheus(stack: Stack) -> None:
    values = {
        "client": "acme",
        "site": "hq",
        "agent": stack.agent_id,
        "instance": f"127.0.0.1:{stack.server.http_port}",
        "__rate_interval": "4s",
        "__interval": "1s",
        "__range": "1h",
    }
    queries = _all_queries()
    assert len(queries) > 50
    failures = []
    for query in queries:
        answer = stack.prometheus.query(substitute(query.expr, values))
        if answer["status"] != "success":
            failures.append(f"{query}: {answer.get('errorType')}: {answer.get('error')}")
    assert not failures, "Prometheus refused:\n" + "\n".join(failures)


def test_a_broken_expression_is_refused(stack: Stack) -> None:
    answer = stack.prometheus.query("sum by (client (rmm_agents)")
    assert answer["status"] == "error" and answer["errorType"] == "bad_data"


def test_hostname_join_finds_the_agent(stack: Stack) -> None:
    """The fleet overview's top-CPU panel joins rmm_agent_info and yields the agent's hostname."""
    (expr,) = [
        query.expr
        for query in dashboard_queries(DASHBOARDS_DIR / "fleet-overview.json")
        if query.where.startswith("panel 'Top 10 hosts by CPU'")
    ]
    expr = substitute(expr, {"client": ".*"})
    # Prometheus may not have scraped the agent's series yet when this test runs first.
    result = wait_for(lambda: stack.prometheus.vector(expr), 60, f"data for {expr}")
    (series,) = [item for item in result if item["metric"]["agent"] == stack.agent_id]
    (info,) = stack.prometheus.vector(f'rmm_agent_info{{agent="{stack.agent_id}"}}')
    assert series["metric"]["hostname"] == info["metric"]["hostname"] != ""
    assert 0 <= float(series["value"][1]) <= 1, series
