"""Slack notifier: an incoming-webhook message in Block Kit.

Agent-supplied text (hostnames, labels, summaries) reaches Slack only in `plain_text` objects,
which Slack shows as written: no `*bold*`, `_italic_`, `~strike~`, no `<http://x|links>`, no
`<!channel>` or `<@U123>` mentions. What must be mrkdwn (the section headings, the context line)
holds only our own words and `escape()`d values; the message's top-level `text` (the phone's
notification) is sent with `mrkdwn: false` and escaped too, as Slack parses `<!here>` there.
"""

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
    """Escape the three characters that start Slack's control sequences (links, mentions,
    entities) in mrkdwn and in a message's top-level text; the only escaping Slack has."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_body(notification: Notification, external_url: str = "") -> dict[str, Any]:
    """Return the incoming-webhook JSON for `notification`."""
    heading = title(notification)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _bounded(heading, _HEADER_MAX)}}
    ]
    for name, alerts in sections(notification):
        shown, left_out = listed(alerts)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{name} ({len(alerts)})*"}}
        )
        lines = [f"• {alert_line(a)}" for a in shown]
        if left_out:
            lines.append(f"… and {left_out} more")
        text = _bounded("\n".join(lines), _SECTION_MAX)
        blocks.append({"type": "section", "text": {"type": "plain_text", "text": text}})
    context = f"receiver {escape(notification.receiver)}"
    if external_url:
        context += f" · <{escape(external_url)}|{escape(external_url)}>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    # `text` is what the phone's notification and screen readers show.
    return {"text": escape(heading), "mrkdwn": False, "blocks": blocks}


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
