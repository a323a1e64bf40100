"""Slack notifier: an incoming-webhook message in Block Kit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rmm_common.yamlnodes import Section
from rmm_server.notify._http import check_url, post_json
from rmm_server.notify.model import Notification, NotifierDeps
from rmm_server.notify.render import alert_line, listed, sections, title

# Block Kit limits: header text 150 characters, section text 3000.
_HEADER_MAX = 150
_SECTION_MAX = 3000


@dataclass(frozen=True)
class SlackSettings:
    """Where the incoming webhook is."""

    url: str
    timeout: float = 10.0


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn gives meaning to."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(notification: Notification, external_url: str = "") -> dict[str, Any]:
    """Return the incoming-webhook JSON for `notification`."""
    heading = title(notification)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": heading[:_HEADER_MAX]}}
    ]
    for name, alerts in sections(notification):
        shown, left_out = listed(alerts)
        lines = [f"*{name} ({len(alerts)})*"] + [f"• {escape(alert_line(a))}" for a in shown]
        if left_out:
            lines.append(f"_… and {left_out} more_")
        text = "\n".join(lines)
        if len(text) > _SECTION_MAX:
            text = text[: _SECTION_MAX - 1] + "…"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    context = f"receiver {escape(notification.receiver)}"
    if external_url:
        context += f" · <{external_url}|{escape(external_url)}>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    # `text` is what the phone's notification and screen readers show.
    return {"text": heading, "blocks": blocks}


class SlackNotifier:
    """POST each notification to a Slack incoming webhook."""

    name: ClassVar[str] = "slack"

    def __init__(self, receiver: str, settings: SlackSettings, deps: NotifierDeps) -> None:
        self.receiver = receiver
        self.settings = settings
        self.deps = deps

    @classmethod
    def parse_settings(cls, section: Section) -> SlackSettings:
        """Read url and timeout."""
        url = section.text("url")
        url = section.check(section.value_node("url"), lambda: check_url(url), url)
        return SlackSettings(url=url, timeout=section.seconds("timeout", 10.0, minimum=0.001))

    @classmethod
    def create(cls, receiver: str, settings: SlackSettings, deps: NotifierDeps) -> SlackNotifier:
        """Return a Slack notifier for `receiver`."""
        return cls(receiver, settings, deps)

    async def send(self, notification: Notification) -> None:
        """POST the message; raise NotifyError on failure."""
        body = slack_body(notification, self.deps.external_url)
        await post_json(
            self.deps.http, self.receiver, self.settings.url, body, self.settings.timeout
        )
