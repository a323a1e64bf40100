"""The agent page's remote actions over HTTP, against a real server and a real agent: roles,
CSRF, audit, and the agent's own answers (its reboot command is `true`: nothing restarts)."""

from __future__ import annotations

import hashlib
import http.client
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from rmm_server.roles import Role
from tests.helpers import (
    ServerProcess,
    end_all,
    enroll_agent,
    free_port,
    rmm_json,
    start_agent,
    wait_for,
)
from tests.web.client import Browser, Reply

# A reboot here ends nothing: the agent answers it and goes on (tests/e2e does the same).
AGENT_CONFIG = 'reboot_command: ["true"]\n'


@dataclass
class Host:
    server: ServerProcess
    agent_id: str
    tokens: dict[Role, str]
    tmp: Path


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    tmp = tmp_path_factory.mktemp("web-actions")
    server = ServerProcess(
        data_dir=tmp / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp / "server.log",
    )
    agent = None
    try:
        server.start()
        agent_id = enroll_agent(server, tmp / "agent", "web-actions")
        (tmp / "agent.yaml").write_text(AGENT_CONFIG)
        agent = start_agent(
            tmp / "agent", tmp / "agent.log", 5.0, "--config", str(tmp / "agent.yaml")
        )
        tokens = {Role.ADMIN: server.admin_token}
        for role in (Role.VIEWER, Role.TIER1, Role.TIER2):
            added = rmm_json(
                server, "operators", "add", f"act-{role.name.lower()}", "--role", role.name
            )
            tokens[role] = added["token"]
        wait_for(
            lambda: [a for a in rmm_json(server, "agents", "list") if a["status"] == "online"],
            60,
            "the agent's command stream",
        )
        yield Host(server, agent_id, tokens, tmp)
    finally:
        end_all(agent, server)


def logged_in(host: Host, role: Role) -> tuple[Browser, Reply]:
    browser = Browser(host.server.http_url)
    assert browser.login(host.tokens[role]).status == 303
    page = browser.get(f"/agents/{host.agent_id}")
    assert page.status == 200, page.body
    return browser, page


def commands(host: Host) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = rmm_json(
        host.server, "commands", "list", "--agent", host.agent_id
    )
    return found


def audit(host: Host, operator: str) -> list[dict[str, Any]]:
    entries = rmm_json(host.server, "audit", "list", "--limit", "5000", "--operator", operator)
    return [e for e in entries if e["operator"] == operator]


def finished(browser: Browser, run_page: str, status: str) -> Reply:
    return wait_for(  # type: ignore[no-any-return]
        lambda: (
            (live := browser.get(run_page + "/live")).body.count(f'data-status="{status}"') and live
        ),
        60,
        f"the run's result {status}",
    )


def test_a_viewer_sees_no_action_and_a_forged_reboot_is_refused(host: Host) -> None:
    browser, page = logged_in(host, Role.VIEWER)
    assert 'id="actions"' not in page.body and "/actions/" not in page.body
    before = len(commands(host))
    reply = browser.post(
        f"/agents/{host.agent_id}/actions/reboot", {"confirm": "yes", "csrf": page.csrf()}
    )
    assert reply.status == 403 and "the reboot action needs tier2" in reply.body
    assert len(commands(host)) == before
    (denied,) = audit(host, "act-viewer")[-1:]
    assert denied["action"] == "RunCommand" and denied["outcome"].startswith("denied")


def test_an_action_without_csrf_is_refused_and_nothing_is_sent(host: Host) -> None:
    browser, _page = logged_in(host, Role.TIER2)
    before, entries = len(commands(host)), len(audit(host, "act-tier2"))
    for form in ({"confirm": "yes"}, {"confirm": "yes", "csrf": "forged"}):
        reply = browser.post(f"/agents/{host.agent_id}/actions/reboot", form)
        assert reply.status == 403 and "CSRF" in reply.body
    assert len(commands(host)) == before and len(audit(host, "act-tier2")) == entries


def test_tier1_collects_now_but_may_not_reboot(host: Host) -> None:
    browser, page = logged_in(host, Role.TIER1)
    assert 'id="action-collect_now"' in page.body and 'id="action-reboot"' not in page.body
    reply = browser.post(f"/agents/{host.agent_id}/actions/collect_now", {"csrf": page.csrf()})
    assert reply.status == 303 and reply.location.startswith("/commands/runs/"), reply.body
    finished(browser, reply.location, "succeeded")
    refused = browser.post(
        f"/agents/{host.agent_id}/actions/reboot", {"confirm": "yes", "csrf": page.csrf()}
    )
    assert refused.status == 403 and "needs tier2 or higher" in refused.body
    assert not [c for c in commands(host) if c["action"] == "reboot"]
    sent = [e for e in audit(host, "act-tier1") if e["action"] == "command.sent"]
    assert [e["details"]["action"] for e in sent] == ["collect_now"]


def test_tier2_pushes_a_file_pulls_it_back_and_downloads_it(host: Host) -> None:
    browser, page = logged_in(host, Role.TIER2)
    remote = host.tmp / f"pushed-{uuid.uuid4().hex[:8]}.txt"
    data = b"from the dashboard \x00\xff\n" * 1000
    reply = multipart_post(
        browser,
        f"/agents/{host.agent_id}/actions/push_file",
        {"csrf": page.csrf(), "path": str(remote), "mode": "0600"},
        ("file", "local.txt", data),
    )
    assert reply.status == 303, reply.body
    finished(browser, reply.location, "succeeded")
    assert remote.read_bytes() == data and oct(remote.stat().st_mode & 0o777) == "0o600"
    relative = browser.post(
        f"/agents/{host.agent_id}/actions/pull_file", {"path": "x.txt", "csrf": page.csrf()}
    )
    assert relative.status == 400 and "must be an absolute path" in relative.body
    pulled = browser.post(
        f"/agents/{host.agent_id}/actions/pull_file", {"path": str(remote), "csrf": page.csrf()}
    )
    assert pulled.status == 303
    done = finished(browser, pulled.location, "succeeded")
    command_id = next(c["command_id"] for c in commands(host) if c["action"] == "pull_file")
    assert f'href="/commands/{command_id}/file"' in done.body
    digest = hashlib.sha256(data).hexdigest()
    assert f"{remote}: {len(data)} bytes, sha256 {digest}" in done.body
    assert "from the dashboard" not in done.body  # the page never carries the file itself
    status, headers, body = raw(browser, "GET", f"/commands/{command_id}/file")
    assert status == 200 and body == data
    assert headers["X-Checksum-Sha256"] == hashlib.sha256(data).hexdigest()
    assert f'filename="{remote.name}"' in headers["Content-Disposition"]
    sent = [e for e in audit(host, "act-tier2") if e["action"] == "command.sent"]
    assert {e["details"]["action"] for e in sent} == {"push_file", "pull_file"}


def test_tier2_reboots_with_the_hosts_consent_mode_and_the_agent_takes_it(host: Host) -> None:
    browser, page = logged_in(host, Role.TIER2)
    assert "Consent on this host (its policies): notify" in page.body
    path = f"/agents/{host.agent_id}/actions/reboot"
    unconfirmed = browser.post(path, {"reason": "web test", "csrf": page.csrf()})
    assert unconfirmed.status == 400 and "to confirm" in unconfirmed.body
    reply = browser.post(path, {"reason": "web test", "confirm": "yes", "csrf": page.csrf()})
    assert reply.status == 303, reply.body
    # RUNNING: the agent checked the signature, took the command and ran its reboot command.
    finished(browser, reply.location, "running")
    (reboot,) = [c for c in commands(host) if c["action"] == "reboot"]
    assert reboot["operator"] == "act-tier2" and "web test" in reboot["summary"]
    sent = [e for e in audit(host, "act-tier2") if e["details"].get("action") == "reboot"]
    assert sent and sent[-1]["target"] == host.agent_id


def multipart_post(
    browser: Browser, path: str, fields: dict[str, str], upload: tuple[str, str, bytes]
) -> Reply:
    """POST a multipart form (the client's urlencoded posts cannot carry a file)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    field, filename, data = upload
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    status, headers, answer = raw(
        browser, "POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    return Reply(status, headers, answer.decode())


def raw(
    browser: Browser,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send one request with the browser's cookies; return the answer's bytes undecoded."""
    url = urlsplit(browser.base)
    conn = http.client.HTTPConnection(url.netloc, timeout=30)
    sent = {**(headers or {}), "Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def test_an_action_for_a_ticket_is_written_on_it_and_a_closed_ticket_sends_nothing(
    host: Host,
) -> None:
    ticket = rmm_json(
        host.server, "tickets", "open", "--agent", host.agent_id, "--title", "slow host"
    )["id"]
    browser = Browser(host.server.http_url)
    assert browser.login(host.tokens[Role.TIER1]).status == 303
    page = browser.get(f"/agents/{host.agent_id}?ticket={ticket}")
    assert f'name="ticket" value="{ticket}"' in page.body
    reply = browser.post(
        f"/agents/{host.agent_id}/actions/collect_now", {"csrf": page.csrf(), "ticket": ticket}
    )
    assert reply.status == 303, reply.body
    run_id = reply.location.rsplit("/", 1)[-1]
    events = rmm_json(host.server, "tickets", "show", str(ticket))["events"]
    assert [e for e in events if run_id in e["text"] and "collect_now" in e["text"]], events
    assert [e["by"] for e in events if run_id in e["text"]] == ["act-tier1"]

    before = len(commands(host))
    for bad, status in ((str(ticket + 1000), 404), ("abc", 400)):
        refused = browser.post(
            f"/agents/{host.agent_id}/actions/collect_now", {"csrf": page.csrf(), "ticket": bad}
        )
        assert refused.status == status and "ticket" in refused.body, refused.body
    assert len(commands(host)) == before
