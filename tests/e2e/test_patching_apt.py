"""Patch windows end to end: a real server and a real agent whose apt backend reads a private
`deb [trusted=yes] file:` repository (through its own APT_CONFIG: the host's sources and lists are
left alone) and installs with the host's dpkg, as root; tiny .debs built here with dpkg-deb and
removed at the end, even when a test fails.

The clock a real server process runs on cannot be moved, so these tests move the window
instead: a policy whose window started a minute ago, loaded with SIGHUP, opens at once (a new
window that is open now runs at once), and one that starts in the next minutes is missed while
the server is stopped and caught up when it starts again inside it. The rollout's own decisions
under a controlled clock are in tests/rmm_server/patching/test_rollout.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.aptrepo import apt_repo, hold_lock, installed_version
from tests.helpers import (
    BIN,
    ServerProcess,
    end_all,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)
from tests.host_dpkg import host_dpkg

REPO = Path(__file__).resolve().parents[2]
DPKG_FRONTEND_LOCK = Path("/var/lib/dpkg/lock-frontend")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0,
        reason="installs .deb packages with the host's dpkg: needs root",
    ),
    pytest.mark.skipif(
        any(shutil.which(p) is None for p in ("dpkg", "dpkg-deb", "dpkg-query", "apt-get")),
        reason="needs dpkg and apt",
    ),
]


def tagged(*roles: str) -> list[str]:
    """Return one package name per role, unique to this run."""
    tag = secrets.token_hex(3)
    return [f"rmm-window-{role}-{tag}" for role in roles]


def policy_dir(root: Path) -> Path:
    """The shipped alert policies, and a patch policy of the test's own (written later)."""
    policies = root / "policies"
    policies.mkdir()
    for path in (REPO / "policies").glob("*.yaml"):
        if path.name != "patching.yaml":
            shutil.copy(path, policies / path.name)
    return policies


def write_patch_policy(
    policies: Path,
    cron: str,
    duration: str = "20m",
    exclude: str = "",
    rings: str = "",
    reboot: str = "mode: never",
) -> None:
    """Approve bug fixes at once (but `exclude`), in a window on `cron` (UTC), no reboot."""
    excluded = f'\n    exclude: ["{exclude}"]' if exclude else ""
    (policies / "patching.yaml").write_text(
        "apiVersion: rmm/v1\nkind: PatchPolicy\nmetadata:\n  name: patching\nscope: {all: true}\n"
        "approval:\n  - name: bugfix\n    classifications: [bugfix, security]\n"
        f"    min_age_days: 0{excluded}\n"
        f'schedule:\n  name: tonight\n  cron: "{cron}"\n  duration: {duration}\n'
        "  time_zone: UTC\n"
        f"{rings}"
        f"reboot: {{{reboot}}}\nreport_back: 10m\n"
    )


def cron_at(when: datetime) -> str:
    """Return a daily cron firing at `when`'s minute (UTC)."""
    return f"{when.minute} {when.hour} * * *"


def minute_ago() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)


def start_server(root: Path, policies: Path) -> ServerProcess:
    return ServerProcess(
        data_dir=root / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=root / "server.log",
        extra_args=["--policies", str(policies)],
    ).start()


def agent_updates(server: ServerProcess, agent_id: str) -> dict[str, dict[str, Any]]:
    listed = rmm_json(server, "patches", "list", "--agent", agent_id)["updates"]
    return {u["update_id"]: u for u in listed}


def runs(server: ServerProcess) -> list[dict[str, Any]]:
    """Return the stored patch runs (the server's SQLite database, read-only)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{server.data_dir / 'rmm.sqlite3'}?mode=ro", uri=True)
    ) as conn:
        rows = conn.execute(
            "SELECT window, starts_at, ends_at, state, progress_json FROM patch_runs"
        ).fetchall()
    return [
        {"window": w, "starts_at": s, "ends_at": e, "state": st, "progress": json.loads(p)}
        for w, s, e, st, p in rows
    ]


def reload(server: ServerProcess) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """The test's directory; the test has the host's dpkg to itself meanwhile."""
    with host_dpkg():
        yield tmp_path


def test_a_window_installs_the_approved_update_for_real_and_skips_excluded_and_declined(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = policy_dir(root)
    with apt_repo(root / "apt", tagged("approved", "excluded", "declined")) as repo:
        approved, excluded, declined = repo.ids()
        # No window yet: New Year's Day only.
        write_patch_policy(policies, "0 0 1 1 *", exclude=f"{repo.names[1]}")
        server = start_server(root, policies)
        agent = None
        try:
            agent_id = enroll_agent(server, root / "agent")
            monkeypatch.setenv("APT_CONFIG", str(repo.conf))  # the agent's apt reads the repo
            agent = start_agent(root / "agent", root / "agent.log", 1.0)
            # The agent reports 1.1 pending; the policy approves one, excludes one.
            listed = wait_for(
                lambda: (u := agent_updates(server, agent_id)) and len(u) == 3 and u,
                120,
                "the agent's three pending updates on the server",
                every=1.0,
            )
            assert listed[approved]["available"] == "1.1"
            assert listed[approved]["state"] == "approved"
            assert listed[excluded]["state"] == "pending"
            rmm(server, "patches", "decline", declined, "--comment", "breaks the app")
            assert agent_updates(server, agent_id)[declined]["state"] == "declined"

            # The window opens: the policy now says it began a minute ago, for 20 minutes.
            write_patch_policy(policies, cron_at(minute_ago()), exclude=f"{repo.names[1]}")
            reload(server)
            wait_for(
                lambda: installed_version(repo.names[0]) == "1.1",
                240,
                f"the window to install {approved} (agent log: {root / 'agent.log'})",
                every=1.0,
            )
            assert installed_version(repo.names[1]) == "1.0"  # excluded by the rule
            assert installed_version(repo.names[2]) == "1.0"  # declined by an operator
            report = wait_for(
                lambda: (
                    (r := rmm_json(server, "patches", "report"))
                    and r["agents"][0]["compliant"]
                    and r
                ),
                60,
                "compliance to reach 100 %",
            )
            assert report["sites"][0]["compliance_ratio"] == 1.0

            # The run takes the result at its next step (every 10 s).
            (patch_run,) = wait_for(
                lambda: (
                    (r := runs(server))
                    and r[0]["progress"]["agents"][agent_id]["step"] == "done"
                    and r
                ),
                60,
                "the run to take the install's result",
            )
            assert patch_run["window"] == "-/tonight@UTC"
            progress = patch_run["progress"]["agents"][agent_id]
            assert progress["installed"] == [approved]
            assert progress["updates"] == [approved]  # neither excluded nor declined was asked
            audit = rmm_json(server, "audit", "list", "--limit", "200")
            actions = [(e["operator"], e["action"]) for e in audit]
            assert ("patching:-/tonight@UTC", "patch.window.opened") in actions
            assert ("patching:-/tonight@UTC", "command.sent") in actions
            assert ("patching:-/tonight@UTC", "command.result") in actions
            assert 'rmm_patch_installs_total{result="installed"} 1.0' in server.metrics()
        finally:
            end_all(agent, server)


def test_a_held_dpkg_lock_is_answered_locked_and_kept_for_a_retry_in_the_window(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = policy_dir(root)
    with apt_repo(root / "apt", tagged("locked")) as repo:
        (update,) = repo.ids()
        write_patch_policy(policies, "0 0 1 1 *")
        server = start_server(root, policies)
        agent = holder = None
        try:
            agent_id = enroll_agent(server, root / "agent")
            monkeypatch.setenv("APT_CONFIG", str(repo.conf))
            agent = start_agent(root / "agent", root / "agent.log", 1.0)
            wait_for(
                lambda: update in agent_updates(server, agent_id),
                120,
                "the agent's pending update on the server",
                every=1.0,
            )
            holder = hold_lock(DPKG_FRONTEND_LOCK)  # as a running apt or dpkg would
            write_patch_policy(policies, cron_at(minute_ago()))
            reload(server)
            progress = wait_for(
                lambda: (
                    (r := runs(server))
                    and r[0]["progress"]["agents"][agent_id].get("step") == "retry"
                    and r[0]["progress"]["agents"][agent_id]
                ),
                120,
                "the install to be answered locked and kept for a retry",
                every=1.0,
            )
            assert progress["locked"] == [update]
            assert progress["retry_at"] < runs(server)[0]["ends_at"]  # inside the window
            assert installed_version(repo.names[0]) == "1.0"
            listed = agent_updates(server, agent_id)[update]
            assert listed["state"] != "installed", listed
        finally:
            if holder is not None:
                holder.kill()
                holder.wait()
            end_all(agent, server)


def test_a_window_missed_while_the_server_was_down_runs_when_it_is_back_inside_it(
    root: Path,
) -> None:
    policies = policy_dir(root)
    # The window starts at the next minute boundary at least 20 s away, for ten minutes.
    start = (datetime.now(UTC) + timedelta(seconds=80)).replace(second=0, microsecond=0)
    write_patch_policy(policies, cron_at(start), duration="10m")
    server = start_server(root, policies)
    try:
        agent_id = enroll_agent(server, root / "agent")
        reload(server)  # the enrolled agent brings the window (planned again on reload)
        with contextlib.closing(
            sqlite3.connect(f"file:{server.data_dir / 'rmm.sqlite3'}?mode=ro", uri=True)
        ) as conn:
            stored = wait_for(
                lambda: conn.execute("SELECT id, next_run_time FROM patch_jobs").fetchall(),
                30,
                "the window's job in the database",
            )
        assert stored == [("patch-window:-/tonight@UTC", start.timestamp())]
        server.stop()
        assert runs(server) == []
        # Down across the window's start.
        time.sleep(max(0.0, start.timestamp() - time.time()) + 3)
        server.start()
        (patch_run,) = wait_for(
            lambda: (
                (r := runs(server)) and r[0]["progress"]["rings"][0]["state"] != "waiting" and r
            ),
            60,
            f"the missed window to open (log: {server.log_path})",
        )
        assert patch_run["starts_at"] == start.timestamp()
        assert patch_run["ends_at"] == start.timestamp() + 600
        # Its agent is in it (it never reported an update, so there is nothing to install).
        assert patch_run["progress"]["agents"][agent_id]["step"] == "nothing"
        assert "patch window -/tonight@UTC open until" in server.log_path.read_text()
    finally:
        end_all(server)


def test_an_agent_back_after_the_window_ended_installs_nothing(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = policy_dir(root)
    with apt_repo(root / "apt", tagged("late")) as repo:
        (update,) = repo.ids()
        write_patch_policy(policies, "0 0 1 1 *")
        server = start_server(root, policies)
        agent = None
        try:
            agent_id = enroll_agent(server, root / "agent")
            monkeypatch.setenv("APT_CONFIG", str(repo.conf))
            agent = start_agent(root / "agent", root / "agent.log", 1.0)
            wait_for(
                lambda: update in agent_updates(server, agent_id),
                120,
                "the agent's pending update on the server",
                every=1.0,
            )
            end_all(agent)  # offline from here
            # A window that began a minute or two ago and closes within the minute.
            began = minute_ago()
            write_patch_policy(policies, cron_at(began), duration="3m")
            reload(server)
            (patch_run,) = wait_for(
                lambda: (
                    (r := runs(server)) and r[0]["progress"]["rings"][0]["state"] != "waiting" and r
                ),
                60,
                "the window's run and its first step",
            )
            progress = patch_run["progress"]["agents"][agent_id]
            # Queued for the agent until the end, or not started at all if too close to it.
            assert progress["step"] in ("install", "missed"), progress
            time.sleep(max(0.0, patch_run["ends_at"] - time.time()) + 1)
            agent = start_agent(root / "agent", root / "agent.log", 1.0)
            (closed,) = wait_for(
                lambda: (r := runs(server)) and r[0]["state"] == "closed" and r,
                60,
                "the run to close after the window",
            )
            assert closed["progress"]["agents"][agent_id]["step"] == "missed"
            # Operators read who missed it from the server's database.
            shown = subprocess.run(
                [str(BIN / "rmm-server"), "patch-runs", "--data-dir", str(server.data_dir),
                 "--output", "json"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert shown.returncode == 0, shown.stderr
            (listed,) = json.loads(shown.stdout)
            assert listed["missed"] == [agent_id] and listed["state"] == "closed"
            table = subprocess.run(
                [str(BIN / "rmm-server"), "patch-runs", "--data-dir", str(server.data_dir)],
                capture_output=True, text=True, timeout=60,
            ).stdout  # fmt: skip
            assert f"missed: {agent_id}" in table and "-/tonight@UTC" in table
            # And through the operator API: `rmm patches runs`, a viewer's to read.
            viewer = rmm_json(server, "operators", "add", "watcher", "--role", "viewer")["token"]
            shown_runs = rmm(server, "patches", "runs", "--output", "json", token=viewer)
            (seen,) = json.loads(shown_runs.stdout)
            assert (seen["window"], seen["state"]) == ("-/tonight@UTC", "closed")
            assert seen["missed"] == [agent_id] and seen["installed"] == []
            assert seen["steps"] == {"missed": 1}
            (ring,) = seen["rings"]
            assert (ring["agents"], ring["missed"], ring["installed"]) == (1, 1, 0)
            assert rmm_json(server, "patches", "runs", "--window", "no/such@UTC") == []
            lines = rmm(server, "patches", "runs").stdout.splitlines()
            assert lines[0].split()[:3] == ["WINDOW", "STARTS", "STATE"]
            assert "-/tonight@UTC" in lines[1] and "closed" in lines[1]
            assert any(line.endswith(f"missed: {agent_id}") for line in lines)
            wait_for(
                lambda: rmm_json(server, "agents", "list")[0]["status"] == "online",
                60,
                "the agent back online",
            )
            time.sleep(5)  # time enough for anything still queued to reach it and run
            assert installed_version(repo.names[0]) == "1.0"
            assert agent_updates(server, agent_id)[update]["state"] == "approved"
        finally:
            end_all(agent, server)


def test_a_window_reboots_through_the_reboot_action_and_waits_for_the_report(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = policy_dir(root)
    rings = "rings:\n  - name: everyone\n    select: {all: true}\n    soak: 0s\n"
    always = "mode: always, consent: unattended"
    with apt_repo(root / "apt", tagged("reboot")) as repo:
        (update,) = repo.ids()
        write_patch_policy(policies, "0 0 1 1 *", rings=rings, reboot=always)
        server = start_server(root, policies)
        agent = None
        # The host owner's reboot command here kills the agent (its parent) instead of the host:
        # what the server sees is the same, the agent goes away and comes back.
        config = root / "agent.yaml"
        config.write_text('reboot_command: ["sh", "-c", "kill -9 $PPID"]\n')
        try:
            agent_id = enroll_agent(server, root / "agent")
            monkeypatch.setenv("APT_CONFIG", str(repo.conf))
            agent = start_agent(root / "agent", root / "agent.log", 1.0, "--config", str(config))
            wait_for(
                lambda: update in agent_updates(server, agent_id),
                120,
                "the agent's pending update on the server",
                every=1.0,
            )
            write_patch_policy(policies, cron_at(minute_ago()), rings=rings, reboot=always)
            reload(server)
            # Installed, then rebooted: the agent process ends (SIGKILL from its reboot).
            assert agent.wait(180) == -signal.SIGKILL, (root / "agent.log").read_text()[-3000:]
            assert installed_version(repo.names[0]) == "1.1"
            progress = runs(server)[0]["progress"]
            assert progress["agents"][agent_id]["step"] == "reboot"
            assert progress["rings"][0]["state"] == "running"  # not healthy while it is away
            agent = start_agent(root / "agent", root / "agent.log", 1.0, "--config", str(config))
            (done,) = wait_for(
                lambda: (
                    (r := runs(server)) and r[0]["progress"]["rings"][0]["state"] == "healthy" and r
                ),
                120,
                "the ring to be healthy once the rebooted agent reported again",
                every=1.0,
            )
            mine = done["progress"]["agents"][agent_id]
            assert mine["step"] == "done" and mine["rebooted_at"] > 0
            assert mine["installed"] == [update]
        finally:
            end_all(agent, server)
