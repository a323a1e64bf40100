"""The notifiers a receiver may use: one line per notifier, keyed by its config key."""

from __future__ import annotations

from typing import Any

from rmm_server.notify.email import EmailNotifier
from rmm_server.notify.model import NotifierType
from rmm_server.notify.slack import SlackNotifier
from rmm_server.notify.teams import TeamsNotifier
from rmm_server.notify.webhook import WebhookNotifier

# The key is the receiver's config key and the module's name.
NOTIFIERS: dict[str, NotifierType[Any]] = {
    WebhookNotifier.name: WebhookNotifier,
    EmailNotifier.name: EmailNotifier,
    SlackNotifier.name: SlackNotifier,
    TeamsNotifier.name: TeamsNotifier,
}
