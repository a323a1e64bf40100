"""Microsoft Teams notifier: a webhook (or Workflows) message carrying an Adaptive Card.

A TextBlock's text is Markdown to Teams (`**bold**`, `[text](url)` links, `- ` lists), and
Teams has no dependable escape for it. So agent-supplied text (hostnames, labels, summaries)
only ever goes into a RichTextBlock's TextRuns, which Adaptive Cards show as written (no
Markdown); TextBlocks hold only our own words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rmm_common.yamlnodes import Section
from rmm_server.notify._http import check_url, post_json
from rmm_server.notify.model import Notification, NotifierDeps
from rmm_server.notify.render import alert_line, listed, sections, title

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
# 1.4 is the newest version every Teams client renders.
CARD_VERSION = "1.4"


@dataclass(frozen=True)
class TeamsSettings:
    """Where the webhook is."""

    url: str
    timeout: float = 10.0


def text_runs(text: str, **style: Any) -> dict[str, Any]:
    """Return a RichTextBlock showing `text` exactly as written (no Markdown), with `style`
    (weight, size, color, isSubtle) on its one TextRun."""
    return {
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "text": text, **style}],
        "spacing": "None",
    }


def adaptive_card(notification: Notification, external_url: str = "") -> dict[str, Any]:
    """Return the Adaptive Card describing `notification`."""
    color = "Attention" if notification.status == "firing" else "Good"
    body: list[dict[str, Any]] = [
        text_runs(title(notification), weight="Bolder", size="Medium", color=color)
    ]
    for name, alerts in sections(notification):
        shown, left_out = listed(alerts)
        body.append(
            {
                "type": "TextBlock",
                "text": f"{name} ({len(alerts)})",
                "weight": "Bolder",
                "wrap": True,
            }
        )
        body.extend(text_runs(f"- {alert_line(alert)}") for alert in shown)
        if left_out:
            body.append({"type": "TextBlock", "text": f"… and {left_out} more", "isSubtle": True})
    card: dict[str, Any] = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    if external_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open RMM", "url": external_url}]
    return card


def teams_body(notification: Notification, external_url: str = "") -> dict[str, Any]:
    """Return the webhook message wrapping the card, as Teams expects it."""
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": adaptive_card(notification, external_url),
            }
        ],
    }


class TeamsNotifier:
    """POST each notification to a Teams incoming webhook or Workflows URL."""

    name: ClassVar[str] = "teams"

    def __init__(self, receiver: str, settings: TeamsSettings, deps: NotifierDeps) -> None:
        self.receiver = receiver
        self.settings = settings
        self.deps = deps

    @classmethod
    def parse_settings(cls, section: Section) -> TeamsSettings:
        """Read url and timeout."""
        url = section.text("url")
        url = section.check(section.value_node("url"), lambda: check_url(url), url)
        return TeamsSettings(url=url, timeout=section.seconds("timeout", 10.0, minimum=0.001))

    @classmethod
    def create(cls, receiver: str, settings: TeamsSettings, deps: NotifierDeps) -> TeamsNotifier:
        """Return a Teams notifier for `receiver`."""
        return cls(receiver, settings, deps)

    async def send(self, notification: Notification) -> None:
        """POST the card; raise NotifyError on failure."""
        body = teams_body(notification, self.deps.external_url)
        await post_json(
            self.deps.http, self.receiver, self.settings.url, body, self.settings.timeout
        )
