"""Dashboard sessions live in the database: a restarted server (same SQLite) still knows the
cookie and its CSRF token, and a logout on one replica ends the session on another (two real
`rmm-server serve` replicas on one PostgreSQL)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.test_replicas import replica
from tests.helpers import ServerProcess, end_all, free_port, wait_for
from tests.web.client import Browser

pytestmark = pytest.mark.timeout(240)


def logged_in(server: ServerProcess) -> Browser:
    browser = Browser(server.http_url)
    reply = browser.login(server.admin_token)
    assert reply.status == 303 and "rmm_session" in browser.cookies, reply.body
    return browser


def test_a_session_outlives_a_restart_of_the_server(tmp_path: Path) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--no-policies"],
    )
    try:
        browser = logged_in(server.start())
        page = browser.get("/fleet")
        assert page.status == 200
        csrf = page.csrf()
        assert server.stop(signal.SIGTERM) == 0
        server.start()
        browser.base = server.http_url  # start() may have had to take other ports
        again = browser.get("/fleet")
        assert again.status == 200, again.location
        assert again.csrf() == csrf  # bound to the session, not to the process
        assert browser.post("/logout", {"csrf": csrf}).status == 303
        assert browser.get("/fleet").status == 303
    finally:
        end_all(server)


def test_a_logout_on_one_replica_ends_the_session_on_the_other(pg_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    a = replica(pg_url, data_dir, tmp_path / "a.log", "replica-a")
    b = replica(pg_url, data_dir, tmp_path / "b.log", "replica-b")
    try:
        a.start()
        b.start()
        on_a = logged_in(a)
        on_b = Browser(b.http_url, cookies=dict(on_a.cookies))
        page = on_b.get("/fleet")  # made on A, known on B: no sticky sessions needed
        assert page.status == 200, page.location
        assert on_a.post("/logout", {"csrf": page.csrf()}).status == 303
        assert on_a.get("/fleet").status == 303  # at once where it happened
        wait_for(
            lambda: on_b.get("/fleet").status == 303,
            15,
            "replica B to see the logout made on A (it trusts what it read for 5 s)",
        )
    finally:
        end_all(a, b)
