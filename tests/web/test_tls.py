"""The dashboard over HTTPS on the HTTP listener, with the server's own certificate: the session
cookie is Secure, plaintext is refused for the dashboard, and /metrics keeps answering both."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ServerProcess, end_all, free_port, http_get
from tests.web.client import Browser


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("web-tls")
    server = ServerProcess(
        data_dir=tmp / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp / "server.log",
        insecure=False,
        extra_args=["--no-policies"],
    )
    try:
        yield server.start()
    finally:
        end_all(server)


def trusting(server: ServerProcess) -> ssl.SSLContext:
    """A client context that trusts exactly the server's own CA (as a browser told of it)."""
    context = ssl.create_default_context(cafile=str(Path(server.data_dir) / "tls" / "ca.pem"))
    context.check_hostname = False  # the certificate names this host; the test dials 127.0.0.1
    return context


def test_https_login_sets_a_secure_cookie(tls_server: ServerProcess) -> None:
    browser = Browser(f"https://127.0.0.1:{tls_server.http_port}", context=trusting(tls_server))
    reply = browser.login(tls_server.admin_token)
    assert reply.status == 303, reply.body
    cookie = next(c for c in reply.set_cookies() if c.startswith("rmm_session="))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert {"secure", "httponly", "samesite=strict"} <= set(flags)
    page = browser.get("/fleet")
    assert page.status == 200 and "0 agents" in page.body


def test_plain_http_is_refused_for_the_dashboard_but_serves_metrics(
    tls_server: ServerProcess,
) -> None:
    plain = Browser(tls_server.http_url)
    reply = plain.get("/login")
    assert reply.status == 403
    assert f"https://127.0.0.1:{tls_server.http_port}/login" in reply.body
    assert "rmm_login_csrf" not in plain.cookies
    assert plain.post("/login", {"token": tls_server.admin_token}).status == 403
    status, body = http_get(tls_server.http_url + "/metrics")
    assert status == 200 and b"rmm_" in body
    https_metrics = Browser(
        f"https://127.0.0.1:{tls_server.http_port}", context=trusting(tls_server)
    ).get("/metrics")
    assert https_metrics.status == 200 and "rmm_" in https_metrics.body


def test_a_connection_that_sends_nothing_is_closed(tls_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", tls_server.http_port), timeout=30) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server, not by our timeout
        assert time.monotonic() - started < 25
