"""deploy/compose.yaml: the four services, mounts that exist, PostgreSQL, consistent ports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.stack import DEPLOY, PROMETHEUS_DIR, REPO

COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (host path, container path) of the service's bind mounts (named volumes left out)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def _server_command(compose: dict[str, Any]) -> str:
    command = compose["services"]["server"]["command"]
    return " ".join(command) if isinstance(command, list) else str(command)


def test_services(compose: dict[str, Any]) -> None:
    assert {"server", "postgres", "prometheus", "grafana"} <= set(compose["services"])
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_bind_mounts_exist_in_the_repository(compose: dict[str, Any]) -> None:
    mounts = [
        (name, source, target)
        for name, service in compose["services"].items()
        for source, target in _bind_mounts(service)
    ]
    assert mounts
    for name, source, _target in mounts:
        path = (COMPOSE.parent / source).resolve()
        assert path.exists(), f"{name} mounts {source}, which is not in the repository"
        assert path == REPO or REPO in path.parents, f"{name} mounts {source} outside the repo"
    targets = {target: source for _name, source, target in mounts}
    assert (COMPOSE.parent / targets["/etc/prometheus"]).resolve() == PROMETHEUS_DIR
    assert (COMPOSE.parent / targets["/etc/grafana/provisioning"]).resolve() == (
        DEPLOY / "grafana" / "provisioning"
    )


def test_grafana_loads_dashboards_from_where_they_are_mounted(compose: dict[str, Any]) -> None:
    provider = DEPLOY / "grafana" / "provisioning" / "dashboards" / "rmm.yml"
    (entry,) = yaml.safe_load(provider.read_text())["providers"]
    mounts = dict(
        (target, source) for source, target in _bind_mounts(compose["services"]["grafana"])
    )
    source = mounts[entry["options"]["path"]]
    assert (COMPOSE.parent / source).resolve() == DEPLOY / "grafana" / "dashboards"
    datasources = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    (datasource,) = yaml.safe_load(datasources.read_text())["datasources"]
    url = re.fullmatch(r"http://([\w-]+):(\d+)", datasource["url"])
    assert url, datasource["url"]
    host, port = url.groups()
    assert host in compose["services"]
    assert any(p.split(":")[-1] == port for p in compose["services"][host]["ports"])


def test_server_runs_on_postgresql(compose: dict[str, Any]) -> None:
    command = _server_command(compose)
    match = re.search(r'--db\s+"?postgresql://[^@\s]+@([\w-]+):(\d+)/(\w+)', command)
    assert match, command
    host, port, database = match.groups()
    assert host == "postgres" and port == "5432"
    assert compose["services"]["postgres"]["environment"]["POSTGRES_DB"] == database
    assert "postgres" in compose["services"]["server"]["depends_on"]


def test_prometheus_targets_match_the_server(compose: dict[str, Any]) -> None:
    command = _server_command(compose)
    http = re.search(r"--http-listen\s+[\d.]+:(\d+)", command)
    assert http, command
    port = http.group(1)
    assert any(mapping.split(":")[-1] == port for mapping in compose["services"]["server"]["ports"])
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "rmm-server"]
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    assert targets == [f"server:{port}"]
    prometheus_command = " ".join(compose["services"]["prometheus"]["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus_command
    assert Path(PROMETHEUS_DIR / "prometheus.yml").exists()
