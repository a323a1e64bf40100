"""Webhook (both formats), Slack and Teams bodies as a real HTTP server receives them."""

from __future__ import annotations

import asyncio
from typing import Any

from rmm_server.notify import Dispatcher, parse_notify_config
from tests.rmm_server.notify.support import FakeTime, HttpReceiver, notice


def card_text(block: dict[str, Any]) -> str:
    """Return what an Adaptive Card block shows: a TextBlock's text or its TextRuns'."""
    if block["type"] == "RichTextBlock":
        return "".join(inline["text"] for inline in block["inlines"])
    return str(block["text"])


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
    assert slack["text"] == "[FIRING:2] DiskLow acme/hq" and slack["mrkdwn"] is False
    kinds = [block["type"] for block in slack["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    assert slack["blocks"][1]["text"] == {"type": "mrkdwn", "text": "*Firing (2)*"}
    section = slack["blocks"][2]["text"]
    assert section["type"] == "plain_text"  # shown as written: no mrkdwn to escape
    assert "disk <10% free" in section["text"]
    assert "srv-1" in section["text"]

    (teams,) = http.on("/teams")
    assert teams["type"] == "message"
    (attachment,) = teams["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    (heading,) = card["body"][0]["inlines"]
    assert heading["type"] == "TextRun" and heading["text"] == "[FIRING:2] DiskLow acme/hq"
    assert heading["color"] == "Attention"
    texts = [card_text(block) for block in card["body"]]
    assert "Firing (2)" in texts
    assert any("srv-0" in text for text in texts)
    assert card["actions"][0]["url"] == "https://rmm.msp.example"


def test_chat_messages_stay_short_for_many_alerts(http: HttpReceiver, monkeypatch: Any) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    deliver_one_group(http, all_receivers(http), count=60)
    (slack,) = http.on("/slack")
    section = slack["blocks"][2]["text"]["text"]
    assert "… and 40 more" in section
    assert len(section) <= 3000
    (teams,) = http.on("/teams")
    texts = [card_text(block) for block in teams["attachments"][0]["content"]["body"]]
    assert "… and 40 more" in texts
    (ours,) = http.on("/hook")
    assert len(ours["alerts"]) == 60


# An agent names itself, and its series labels, with every markup its text may reach: Slack's
# mrkdwn, links and mentions, Teams' Markdown, HTML, and a line break that would start a made-up
# alert line.
HOSTILE_HOST = (
    "web-01 *bold* _it_ ~gone~ `code` <!channel> <!here> <@U024BE7LH> @channel "
    "<http://evil.example|click me> [click](http://evil.example) **strong** # Head &amp; <b>x</b>"
)
HOSTILE_LABEL = "/var\n- [critical/L1] FakeAlert on dc01 (acme/hq): wire money now\u202e"
FORGED_LINE = "\n- [critical/L1] FakeAlert"


def deliver_hostile(http: HttpReceiver) -> None:
    """Send one alert grouped by its hostile hostname to a Slack and a Teams receiver."""
    config = parse_notify_config(f"""
receivers:
  - name: slack
    slack: {{url: "{http.url("/slack")}"}}
  - name: teams
    teams: {{url: "{http.url("/teams")}"}}
route:
  group_wait: 0s
  group_by: [rule, hostname, mountpoint]
  routes:
    - {{receiver: slack, continue: true}}
    - {{receiver: teams}}
""")

    async def scenario() -> None:
        fake = FakeTime()
        dispatcher = Dispatcher(config, fake.clock, fake.sleep)
        await dispatcher.start()
        try:
            await dispatcher.submit(
                notice(
                    hostname=HOSTILE_HOST,
                    labels={"mountpoint": HOSTILE_LABEL},
                    annotations={"summary": f"disk full on {HOSTILE_HOST} {HOSTILE_LABEL}"},
                )
            )
            await dispatcher.flush()
        finally:
            await dispatcher.stop()

    asyncio.run(scenario())


def test_slack_shows_agent_text_as_written_and_parses_none_of_it(http: HttpReceiver) -> None:
    deliver_hostile(http)
    (slack,) = http.on("/slack")
    # The notification text: mentions and links escaped, formatting off.
    assert slack["mrkdwn"] is False
    assert "<" not in slack["text"] and "&lt;!channel&gt;" in slack["text"]
    assert "&amp;amp;" in slack["text"]
    marked = []
    for block in slack["blocks"]:
        texts = [block["text"]] if "text" in block else block.get("elements", [])
        for text in texts:
            if text["type"] == "mrkdwn":
                marked.append(text["text"])
            else:
                assert text["type"] == "plain_text"
                assert FORGED_LINE not in text["text"]  # the newline is shown as \n
    # mrkdwn holds only our own words: no agent text, so nothing of it is parsed.
    assert marked and not any("web-01" in text or "/var" in text for text in marked)
    lines = slack["blocks"][2]["text"]["text"]
    assert HOSTILE_HOST in lines  # as written, every character
    assert "/var\\n- [critical/L1] FakeAlert" in lines and "\u202e" not in lines
    assert lines.count("\n") == 0  # one alert, one line


def test_teams_shows_agent_text_only_in_text_runs(http: HttpReceiver) -> None:
    deliver_hostile(http)
    (teams,) = http.on("/teams")
    body = teams["attachments"][0]["content"]["body"]
    runs: list[str] = []
    for block in body:
        if block["type"] == "TextBlock":  # Markdown to Teams: our own words only
            assert "web-01" not in block["text"] and "/var" not in block["text"]
        else:
            assert block["type"] == "RichTextBlock"
            assert all(inline["type"] == "TextRun" for inline in block["inlines"])
            runs.extend(inline["text"] for inline in block["inlines"])
    assert any(HOSTILE_HOST in run for run in runs)  # the title names the group's hostname
    assert all(FORGED_LINE not in run and "\u202e" not in run for run in runs)
    (line,) = [run for run in runs if run.startswith("- ")]
    assert "/var\\n- [critical/L1] FakeAlert" in line
