"""Microsoft Teams notifier: a webhook (or Workflows) message carrying an Adaptive Card."""

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


def adaptive_card(notification: Notification, external_url: str = "") -> dict[str, Any]:
    """Return the Adaptive Card describing `notification`."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": title(notification),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "color": "Attention" if notification.status == "firing" else "Good",
        }
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
        body.extend(
            {"type": "TextBlock", "text": f"- {alert_line(alert)}", "wrap": True, "spacing": "None"}
            for alert in shown
        )
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
