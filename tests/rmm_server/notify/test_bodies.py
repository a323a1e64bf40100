"""Webhook (both formats), Slack and Teams bodies as a real HTTP server receives them."""

from __future__ import annotations

import asyncio
from typing import Any

from rmm_server.notify import Dispatcher, parse_notify_config
from tests.rmm_server.notify.support import FakeTime, HttpReceiver, notice


def deliver_one_group(http: HttpReceiver, receivers: str, count: int = 2) -> None:
    """Send `count` DiskLow alerts of acme/hq (one already resolved) to every receiver."""
    config = parse_notify_config(f"""
external_url: https://rmm.msp.example/
receivers:
{receivers}
route:
  group_wait: 0s
  routes:
    - {{receiver: hook, continue: true}}
    - {{receiver: am, continue: true}}
    - {{receiver: slack, continue: true}}
    - {{receiver: teams}}
""")

    async def scenario() -> None:
        fake = FakeTime()
        dispatcher = Dispatcher(config, fake.clock, fake.sleep)
        await dispatcher.start()
        try:
            for index in range(count):
                await dispatcher.submit(
                    notice(
                        alert_id=f"d{index}",
                        rule="DiskLow",
                        severity="warning",
                        agent_id=f"agent-{index}",
                        hostname=f"srv-{index}",
                        labels={"mountpoint": "/var", "team": "infra"},
                        annotations={"summary": "disk <10% free", "runbook": "wiki/disk"},
                        value=0.93,
                    )
                )
            await dispatcher.flush()
        finally:
            await dispatcher.stop()

    asyncio.run(scenario())


def all_receivers(http: HttpReceiver) -> str:
    return f"""
  - name: hook
    webhook: {{url: "{http.url("/hook")}", headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}}}
  - name: am
    webhook: {{url: "{http.url("/am")}", format: alertmanager}}
  - name: slack
    slack: {{url: "{http.url("/slack")}"}}
  - name: teams
    teams: {{url: "{http.url("/teams")}"}}
"""


def test_every_body_format(http: HttpReceiver, monkeypatch: Any) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    deliver_one_group(http, all_receivers(http))

    (ours,) = http.on("/hook")
    hook_request = next(r for r in http.requests if r.path == "/hook")
    assert hook_request.headers["Authorization"] == "Bearer t0ken"
    assert hook_request.headers["Content-Type"] == "application/json"
    assert ours["status"] == "firing"
    assert ours["external_url"] == "https://rmm.msp.example"
    assert ours["alerts"][1]["labels"] == {"mountpoint": "/var", "team": "infra"}
    assert ours["alerts"][1]["value"] == 0.93

    (am,) = http.on("/am")
    assert am["version"] == "4"
    assert am["receiver"] == "am"
    assert am["status"] == "firing"
    assert am["groupKey"].startswith("route.routes[1]/am:")
    assert am["groupLabels"] == {"alertname": "DiskLow", "client": "acme", "site": "hq"}
    assert am["externalURL"] == "https://rmm.msp.example"
    assert am["truncatedAlerts"] == 0
    first = am["alerts"][0]
    assert set(first) == {
        "status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"
    }  # fmt: skip
    assert first["labels"] == {
        "alertname": "DiskLow", "severity": "warning", "tier": "L1", "client": "acme",
        "site": "hq", "agent": "agent-0", "hostname": "srv-0", "mountpoint": "/var",
        "team": "infra",
    }  # fmt: skip
    assert first["endsAt"] == "0001-01-01T00:00:00Z"
    assert len(first["fingerprint"]) == 16
    assert first["fingerprint"] != am["alerts"][1]["fingerprint"]
    assert am["commonLabels"]["mountpoint"] == "/var"
    assert "agent" not in am["commonLabels"]
    assert am["commonAnnotations"] == {"summary": "disk <10% free", "runbook": "wiki/disk"}

    (slack,) = http.on("/slack")
    assert slack["text"] == "[FIRING:2] DiskLow acme/hq"
    kinds = [block["type"] for block in slack["blocks"]]
    assert kinds == ["header", "section", "context"]
    section = slack["blocks"][1]["text"]["text"]
    assert section.startswith("*Firing (2)*")
    assert "disk &lt;10% free" in section  # Slack mrkdwn escaping
    assert "srv-1" in section

    (teams,) = http.on("/teams")
    assert teams["type"] == "message"
    (attachment,) = teams["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    assert card["body"][0]["text"] == "[FIRING:2] DiskLow acme/hq"
    assert card["body"][0]["color"] == "Attention"
    texts = [block["text"] for block in card["body"]]
    assert "Firing (2)" in texts
    assert any("srv-0" in text for text in texts)
    assert card["actions"][0]["url"] == "https://rmm.msp.example"


def test_chat_messages_stay_short_for_many_alerts(http: HttpReceiver, monkeypatch: Any) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    deliver_one_group(http, all_receivers(http), count=60)
    (slack,) = http.on("/slack")
    section = slack["blocks"][1]["text"]["text"]
    assert "… and 40 more" in section
    assert len(section) <= 3000
    (teams,) = http.on("/teams")
    texts = [block["text"] for block in teams["attachments"][0]["content"]["body"]]
    assert "… and 40 more" in texts
    (ours,) = http.on("/hook")
    assert len(ours["alerts"]) == 60
