"""Notifications: route alert notices, group them, deliver them through notifiers."""

from __future__ import annotations

from typing import Any

from rmm_server.notify.config import (
    NotifyConfig,
    RouteMatch,
    TierConfig,
    load_notify_config,
    parse_notify_config,
)
from rmm_server.notify.dispatcher import Dispatcher
from rmm_server.notify.email import EmailNotifier
from rmm_server.notify.model import (
    AlertNotice,
    Notification,
    Notifier,
    NotifierDeps,
    NotifierType,
    NotifyError,
)
from rmm_server.notify.slack import SlackNotifier
from rmm_server.notify.teams import TeamsNotifier
from rmm_server.notify.webhook import WebhookNotifier

# One line per notifier; the key is the receiver's config key and the module's name.
NOTIFIERS: dict[str, NotifierType[Any]] = {
    WebhookNotifier.name: WebhookNotifier,
    EmailNotifier.name: EmailNotifier,
    SlackNotifier.name: SlackNotifier,
    TeamsNotifier.name: TeamsNotifier,
}


__all__ = [
    "NOTIFIERS",
    "AlertNotice",
    "Dispatcher",
    "Notification",
    "Notifier",
    "NotifierDeps",
    "NotifierType",
    "NotifyConfig",
    "NotifyError",
    "RouteMatch",
    "TierConfig",
    "load_notify_config",
    "parse_notify_config",
]
