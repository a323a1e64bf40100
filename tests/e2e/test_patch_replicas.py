"""Patch windows with two `rmm-server serve` replicas on one PostgreSQL: only the leader runs the
window jobs (APScheduler takes no lock on a due job), an open window becomes one run however many
replicas see it, and when the leader is SIGKILLed the other replica takes the window jobs over."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from rmm_server.storage.migrate import engine_url
from tests.e2e.test_patching_apt import cron_at, minute_ago, policy_dir, write_patch_policy
from tests.e2e.test_replicas import leader_of
from tests.helpers import ServerProcess, end_all, enroll_agent, free_port, rmm, wait_for

pytestmark = pytest.mark.timeout(300)
STARTED = "patch window scheduler started"


def replica(url: str, root: Path, name: str, policies: Path) -> ServerProcess:
    return ServerProcess(
        data_dir=root / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=root / f"{name}.log",
        extra_args=["--db", url, "--replica-id", name, "--policies", str(policies)],
    )


def stored_runs(url: str) -> list[tuple[str, float]]:
    engine = create_engine(engine_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text('SELECT "window", starts_at FROM patch_runs')).all()
    finally:
        engine.dispose()
    return [(str(w), float(s)) for w, s in rows]


def test_only_the_leader_runs_windows_and_the_other_takes_them_over(
    pg_url: str, tmp_path: Path
) -> None:
    policies = policy_dir(tmp_path)
    write_patch_policy(policies, "0 0 1 1 *")
    a = replica(pg_url, tmp_path, "replica-a", policies)
    b = replica(pg_url, tmp_path, "replica-b", policies)
    try:
        a.start(timeout=60)
        b.start(timeout=60)
        enroll_agent(a, tmp_path / "agent")
        [leader] = wait_for(lambda: leader_of(a, b), 30, "one replica to lead")
        follower = b if leader is a else a
        wait_for(lambda: STARTED in leader.log(), 30, "the leader to run the window jobs")
        assert STARTED not in follower.log()

        # A window open now, loaded on both (a reload asked of one reaches the other).
        started = minute_ago()
        write_patch_policy(policies, cron_at(started))
        rmm(follower, "policy", "reload")
        wait_for(lambda: stored_runs(pg_url), 60, "the open window's run")
        assert stored_runs(pg_url) == [("-/tonight@UTC", started.timestamp())]

        leader.stop(signal.SIGKILL)
        wait_for(
            lambda: STARTED in follower.log(),
            60,
            f"the surviving replica to take the window jobs over (log: {follower.log_path})",
        )
        # It finds the window's job in the shared store and the run already open: still one.
        rmm(follower, "policy", "reload")
        assert stored_runs(pg_url) == [("-/tonight@UTC", started.timestamp())]
    finally:
        end_all(a, b)
