"""`rmm patches` against a real server and a real agent whose apt backend reads a local file
repository (through its own APT_CONFIG: the host's own sources and lists are left alone) and
installs with the host's dpkg, as root: tiny .debs built here, removed at the end.

The story: the agent lists the updates, the server takes the list once, an operator approves
one and declines one, a tier1 operator may not, `install --now` installs for real (dpkg-query
shows the new version) and reports a failing one, compliance reaches 100 % once the failing one
is declined, the metrics and the audit log say so.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.aptrepo import AptRepo, apt_repo, installed_version
from tests.helpers import (
    ServerProcess,
    end_process,
    enroll_agent,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dpkg-deb") is None or shutil.which("apt-get") is None,
    reason="installs .deb packages with the host's dpkg: needs root on a Debian-like host",
)


class Repo:
    """Three packages at 1.0 installed, 1.1 published; the broken one's 1.1 fails to install."""

    def __init__(self, made: AptRepo) -> None:
        self.good, self.held, self.broken = made.names
        self.names = made.names
        self.conf = made.conf


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    """The repository, and the host's dpkg to this test alone meanwhile (tests/host_dpkg.py)."""
    tag = secrets.token_hex(3)
    names = [f"rmm-e2e-{role}-{tag}" for role in ("good", "held", "broken")]
    with apt_repo(tmp_path / "apt", names, failing=names[2:]) as made:
        yield Repo(made)


def fleet_view(server: ServerProcess, *args: str) -> dict[str, Any]:
    return {u["update_id"]: u for u in rmm_json(server, "patches", "list", *args)["updates"]}


def test_list_approve_decline_install_now_and_report(
    server: ServerProcess, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id = enroll_agent(server, tmp_path / "agent")
    good, held, broken = (f"apt:{name}" for name in repo.names)
    monkeypatch.setenv("APT_CONFIG", str(repo.conf))  # Popen copies the environment now
    agent = start_agent(tmp_path / "agent", tmp_path / "agent.log", 1.0)
    try:
        view = wait_for(
            lambda: (v := fleet_view(server)) and all(i in v for i in (good, held, broken)) and v,
            90,
            "the agent's three updates in `rmm patches list`",
            every=1.0,
        )
        assert view[good]["available"] == "1.1" and view[good]["agents"] == 1
        # The shipped policy defers bug fixes a week: pending, saying until when.
        assert view[good]["pending"] == 1 and view[good]["classification"] == "bugfix"
        mine = rmm_json(server, "patches", "list", "--agent", agent_id)
        why = {u["update_id"]: u["why"] for u in mine["updates"]}
        assert why[good].startswith('deferred: rule "bugfix"'), why[good]

        # A tier1 operator may look but not approve (exit 3: denied).
        tier1 = rmm_json(server, "operators", "add", "first-line", "--role", "tier1")["token"]
        assert rmm(server, "patches", "list", token=tier1).returncode == 0
        denied = rmm(server, "patches", "approve", good, token=tier1, check=False)
        assert denied.returncode == 3 and "needs tier2" in denied.stderr

        approved = rmm_json(server, "patches", "approve", good, broken, "--comment", "CAB-7")
        assert approved["scope"] == "everywhere" and approved["changed"] == 2
        declined = rmm_json(
            server, "patches", "decline", held, "--target", "client=acme", "--comment", "breaks app"
        )
        assert declined["scope"] == "for client acme" and declined["changed"] == 1
        assert set(fleet_view(server, "--state", "approved")) == {good, broken}
        assert set(fleet_view(server, "--state", "declined")) == {held}

        # Without --now: marked for its next patch window, and both views say it is asked for.
        marked = rmm(server, "patches", "install", "--target", "client=acme", "--output", "json")
        assert [e["status"] for e in json.loads(marked.stdout)] == ["marked"]
        mine = rmm_json(server, "patches", "list", "--agent", agent_id)
        assert mine["install_requested_at"] and mine["install_requested_by"] == "admin"
        assert "install requested by admin" in rmm(
            server, "patches", "list", "--agent", agent_id
        ).stdout
        (row,) = rmm_json(server, "patches", "report")["agents"]
        assert row["install_requested_at"] == mine["install_requested_at"]
        assert "next window" in rmm(server, "patches", "report").stdout

        result = rmm(
            server, "patches", "install", "--target", "client=acme", "--now",
            "--timeout", "5m", "--output", "json", check=False,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr  # the broken one failed
        (event,) = json.loads(result.stdout)
        outcomes = {u["update_id"]: u for u in event["updates"]}
        assert outcomes[good]["status"] == "installed" and outcomes[good]["version"] == "1.1"
        assert outcomes[broken]["status"] == "failed"
        assert "dpkg returned an error code" in outcomes[broken]["message"]
        assert held not in outcomes, "a declined update is never sent"
        assert installed_version(repo.good) == "1.1"
        assert installed_version(repo.broken) == "1.0"
        assert installed_version(repo.held) == "1.0"

        after = fleet_view(server)
        assert after[good]["installed"] == 1 and after[good]["agents"] == 0
        assert after[broken]["failed"] == 1 and after[held]["declined"] == 1
        states = {
            u["update_id"]: u["state"]
            for u in rmm_json(server, "patches", "list", "--agent", agent_id)["updates"]
        }
        assert states == {good: "installed", broken: "failed", held: "declined"}
        report = rmm_json(server, "patches", "report", "--client", "acme")
        (row,) = report["agents"]
        assert (row["approved_missing"], row["failed"], row["compliant"]) == (1, 1, False)
        assert row["last_install_at"]

        # Declined, the broken update no longer counts as missing: 100 % compliant.
        rmm(server, "patches", "decline", broken, "--target", agent_id)
        report = rmm_json(server, "patches", "report")
        assert report["sites"][0]["compliance_ratio"] == 1.0
        assert report["agents"][0]["compliant"] is True
        csv_lines = rmm(server, "patches", "report", "--output", "csv").stdout.splitlines()
        assert csv_lines[0].startswith("agent_id,") and csv_lines[1].startswith(agent_id)
        table = rmm(server, "patches", "report").stdout
        assert "acme" in table and "100%" in table

        metrics = server.metrics()
        assert 'rmm_patch_installs_total{result="installed"} 1.0' in metrics
        assert 'rmm_patch_installs_total{result="failed"} 1.0' in metrics
        assert 'rmm_patch_compliance_ratio{client="acme",site="hq"} 1.0' in metrics
        assert f'rmm_reboot_pending{{agent="{agent_id}",client="acme",site="hq"}} 0.0' in metrics
        assert "rmm_patches_pending{" in metrics

        audit = rmm_json(server, "audit", "list", "--limit", "100")
        actions = [(e["action"], e["outcome"]) for e in audit]
        assert ("ApprovePatches", "ok") in actions and ("DeclinePatches", "ok") in actions
        assert any(a == "ApprovePatches" and o.startswith("denied") for a, o in actions)
        assert ("InstallPatches", "ok") in actions
        assert any(a == "command.result" for a, _ in actions)
    finally:
        end_process(agent)
