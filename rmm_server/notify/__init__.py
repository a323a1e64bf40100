"""Notifications: route alert notices, group them, deliver them through notifiers."""

from __future__ import annotations

from rmm_server.notify.config import (
    NotifyConfig,
    RouteMatch,
    TierConfig,
    load_notify_config,
    parse_notify_config,
)
from rmm_server.notify.dispatcher import Dispatcher
from rmm_server.notify.model import (
    AlertNotice,
    Notification,
    Notifier,
    NotifierDeps,
    NotifierType,
    NotifyError,
)
from rmm_server.notify.registry import NOTIFIERS

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
