"""`rmm drivers install|rollback` end to end, as root: a real server, a real agent, a tiny .deb
installed for real, replaced, rolled back, and every install and rollback in the audit log."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.aptrepo import NEEDS_ROOT_AND_APT
from tests.helpers import (
    ServerProcess,
    end_process,
    enroll_agent,
    free_port,
    http_get,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)
from tests.host_dpkg import host_dpkg
from tests.rmm_agent.actions.test_driver_package import PACKAGE, build_deb, installed

pytestmark = [*NEEDS_ROOT_AND_APT, pytest.mark.slow, pytest.mark.timeout(300)]


def streams(server: ServerProcess) -> float:
    status, body = http_get(server.http_url + "/metrics")
    for line in body.decode().splitlines() if status == 200 else []:
        if line.startswith("rmm_server_command_streams "):
            return float(line.split()[1])
    return 0.0


@pytest.fixture
def clean_package() -> Iterator[None]:
    """The host's dpkg to this test alone (tests/host_dpkg.py), the package absent around it."""
    with host_dpkg():
        subprocess.run(["dpkg", "-P", PACKAGE], capture_output=True, check=False)
        yield
        subprocess.run(["dpkg", "-P", PACKAGE], capture_output=True, check=False)


def test_install_replace_and_roll_back_a_driver_package(
    tmp_path: Path, clean_package: None
) -> None:
    builds = tmp_path / "build"
    builds.mkdir()
    build_deb(builds, "1.0")
    build_deb(builds, "1.1")
    server = ServerProcess(
        tmp_path / "server", free_port(), free_port(), tmp_path / "server.log"
    ).start()
    agent = None
    try:
        agent_id = enroll_agent(server, tmp_path / "agent")
        agent = start_agent(tmp_path / "agent", tmp_path / "agent.log", 30.0)
        wait_for(lambda: streams(server) >= 1, 60, "the agent's command stream")
        target = f"agent={agent_id}"
        for version, previous in (("1.0", ""), ("1.1", "1.0")):
            deb = builds / f"{PACKAGE}_{version}_all.deb"
            (outcome,) = rmm_json(server, "drivers", "install", "--target", target, str(deb))
            assert outcome["status"] == "succeeded", outcome
            done = outcome["result"]["driver_package"]
            assert (done.get("version"), done.get("previous", "")) == (version, previous), done
            assert installed() == version
        table = rmm(server, "drivers", "rollback", "--target", target, "--kind", "deb", PACKAGE)
        assert "1.0" in table.stdout, table.stdout
        assert installed() == "1.0"
        # A package that is no driver package is refused before anything is sent.
        bad = rmm(
            server, "drivers", "install", "-t", target, str(tmp_path / "server.log"), check=False
        )
        assert bad.returncode == 2 and "a driver package is a .deb" in bad.stderr
        # This host offers no driver updates of its own: the fleet view lists none.
        listed = rmm_json(server, "drivers", "list")
        assert listed["updates"] == [] and listed["agents"] >= 1, listed
        audit = rmm_json(server, "audit", "list", "--limit", "50")
        summaries = [e for e in audit if "driver" in str(e.get("details", "")) + str(e)]
        assert sum("install driver package" in str(e) for e in summaries) >= 2, audit
        assert any("roll back driver deb " + PACKAGE in str(e) for e in summaries), audit
    finally:
        end_process(agent)
        server.stop()
