"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright for Python
(never a browser Playwright downloads). A real server and a real agent reporting every second.

One walk through what an operator does: log in, see the fleet, open the agent and see its charts
drawn, see a critical alert appear without reloading when the agent's host crosses the rule (a
process named rmmwebhog starts), acknowledge it as tier1, be refused as a viewer, have the agent
collect now from its page as tier1, log out. Every
browser, agent, server and helper process is ended in a finally, whatever failed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
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

sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOG = "rmmwebhog"
POLICY = f"""\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {{name: browser}}
scope: {{all: true}}
rules:
  - name: HogRunning
    expr: 'process_running("{HOG}")'
    severity: critical
    tier: L1
"""
# The promise: a firing alert is on the open overview within 5 s of the report that crossed
# its rule. The agent reports every second, so the process is seen within about 1 s; the
# overview polls every 2 s.
APPEAR_SECONDS = 5.0 + 1.0


@dataclass
class Setup:
    server: ServerProcess
    agent_id: str
    tokens: dict[Role, str]
    tmp: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests run Debian's chromium "
            "(scripts/test.sh installs it: apt-get install chromium)",
            pytrace=False,
        )
    assert not hogs(), f"a leftover {HOG} from another run"
    tmp = tmp_path_factory.mktemp("browser")
    policies = tmp / "policies"
    policies.mkdir()
    (policies / "browser.yaml").write_text(POLICY)
    server = ServerProcess(
        data_dir=tmp / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp / "server.log",
        extra_args=["--policies", str(policies)],
    )
    agent = None
    try:
        server.start()
        agent_id = enroll_agent(server, tmp / "agent", "browser-test")
        agent = start_agent(tmp / "agent", tmp / "agent.log", 1.0)
        tokens = {Role.ADMIN: server.admin_token}
        for role in (Role.VIEWER, Role.TIER1):
            name = f"web-{role.name.lower()}"
            tokens[role] = rmm_json(server, "operators", "add", name, "--role", role.name)["token"]
        wait_for(
            lambda: rmm_json(server, "agents", "show", agent_id).get("last_seen"),
            60,
            "the agent's first report",
        )
        yield Setup(server, agent_id, tokens, tmp)
    finally:
        end_all(agent, server)


def hogs() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == HOG]


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


def log_in(page: Any, base: str, token: str, path: str = "/fleet") -> None:
    page.goto(base + path)
    page.wait_for_url(lambda url: "/login?next=" in url)
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + path)


def test_an_operators_walk_through_the_dashboard(setup: Setup, browser: Any) -> None:
    base = setup.server.http_url
    hog = None
    try:
        viewer = browser.new_context(timezone_id="Europe/Berlin").new_page()
        log_in(viewer, base, setup.tokens[Role.VIEWER])
        # The fleet: the agent's row, nothing critical yet.
        link = viewer.locator(f'a[href="/agents/{setup.agent_id}"]')
        link.wait_for()
        critical = viewer.locator('[data-severity="critical"]')
        assert critical.inner_text() == "critical 0"

        # The agent's host crosses the rule: the alert appears on the open page, no reload.
        copy = setup.tmp / HOG
        shutil.copy("/bin/sleep", copy)
        hog = subprocess.Popen([str(copy), "600"])
        started = time.monotonic()
        viewer.wait_for_function(
            "() => document.querySelector('[data-severity=critical]')"
            ".textContent.trim() === 'critical 1'",
            timeout=APPEAR_SECONDS * 1000 * 4,  # fail late, measure below
        )
        appeared = time.monotonic() - started
        assert appeared < APPEAR_SECONDS, f"the alert took {appeared:.1f} s to appear"

        # The agent page: identity, times in the browser's zone, the charts drawn.
        viewer.locator(f'a[href="/agents/{setup.agent_id}"]').first.click()
        viewer.wait_for_url(f"{base}/agents/{setup.agent_id}")
        assert "browser-test" in viewer.inner_text("dl.facts")
        viewer.wait_for_selector(".chart[data-series=memory_ratio] canvas")
        assert int(viewer.get_attribute(".chart[data-series=memory_ratio]", "data-drawn")) >= 1
        source = viewer.locator("#chart-source")
        assert source.get_attribute("data-source") == "server"  # no --prometheus-url here
        assert source.inner_text() == "5-minute means kept by the server."
        assert "HogRunning" in viewer.inner_text("#agent-alerts")
        assert viewer.locator("#actions").count() == 0  # a viewer gets no remote action

        # A viewer sees the alert but has no acknowledge form, and a forged POST is refused.
        viewer.goto(base + "/alerts")
        row = viewer.locator("#alerts tr", has_text="HogRunning")
        row.wait_for()
        assert viewer.locator("form.ack").count() == 0
        alert_id = row.get_attribute("data-alert")
        status = viewer.evaluate(
            """async (id) => {
                const csrf = document.querySelector('input[name=csrf]').value;
                const body = new URLSearchParams({csrf, comment: 'mine'});
                const r = await fetch('/alerts/' + id + '/ack', {method: 'POST', body});
                return [r.status, await r.text()];
            }""",
            alert_id,
        )
        assert status[0] == 403 and "needs tier1 or higher" in status[1]

        # Tier1 acknowledges it.
        tier1 = browser.new_context().new_page()
        log_in(tier1, base, setup.tokens[Role.TIER1], "/alerts")
        form = tier1.locator(f'tr[data-alert="{alert_id}"] form.ack')
        form.locator("input[name=comment]").fill("on the phone with the client")
        form.locator("button").click()
        tier1.wait_for_url(base + "/alerts")
        acked = tier1.locator(f'tr[data-alert="{alert_id}"]').inner_text()
        assert "web-tier1: on the phone with the client" in acked

        # Tier1 acts from the agent's page: collect now, the agent's answer on the run's page.
        tier1.goto(f"{base}/agents/{setup.agent_id}")
        tier1.click("#action-collect_now button")
        tier1.wait_for_url(lambda url: "/commands/runs/" in url)
        tier1.wait_for_selector('#run-results tr[data-status="succeeded"]')

        # Log out: the dashboard is behind the login again.
        viewer.click("form.logout button")
        viewer.wait_for_url(base + "/login")
        viewer.goto(base + "/fleet")
        viewer.wait_for_url(lambda url: "/login?next=" in url)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
