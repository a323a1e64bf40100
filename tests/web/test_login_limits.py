"""Wrong tokens at the dashboard's login are limited like gRPC operator calls (--operator-rate),
per source address; a real operator's login is limited on their own allowance, not on the
guesser's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import ServerProcess, end_all, free_port
from tests.web.client import Browser


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("web-limits")
    server = ServerProcess(
        data_dir=tmp / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp / "server.log",
        extra_args=["--no-policies", "--operator-rate", "1/m:3"],
    )
    try:
        yield server.start()
    finally:
        end_all(server)


def test_wrong_tokens_are_limited_and_the_right_one_still_logs_in(limited: ServerProcess) -> None:
    guesser = Browser(limited.http_url)
    statuses = [guesser.login(f"rmmo_guess{n}_xxxxxxxxxxxxxxxx").status for n in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429], statuses
    limited_page = guesser.login("rmmo_guess9_xxxxxxxxxxxxxxxx")
    assert "Too many failed logins from 127.0.0.1: retry in" in limited_page.body
    admin = Browser(limited.http_url)
    assert admin.login(limited.admin_token).status == 303
