"""Webhook notifier: our JSON body, or an Alertmanager-compatible one (webhook version 4)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rmm_common.yamlnodes import Section
from rmm_server.notify._http import check_url, post_json
from rmm_server.notify.model import (
    AlertNotice,
    Notification,
    NotifierDeps,
    all_labels,
)
from rmm_server.notify.render import timestamp

FORMATS = ("rmm", "alertmanager")
BODY_VERSION = "1"
# Alertmanager's JSON for "no end time" (Go's zero time).
_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class WebhookSettings:
    """Where and how to POST."""

    url: str
    format: str = "rmm"
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    max_alerts: int = 0  # 0: all


def alert_body(alert: AlertNotice) -> dict[str, Any]:
    """Return one alert in our webhook format."""
    return {
        "alert_id": alert.alert_id,
        "rule": alert.rule,
        "status": alert.status,
        "severity": alert.severity,
        "tier": alert.tier,
        "client": alert.client,
        "site": alert.site,
        "agent_id": alert.agent_id,
        "hostname": alert.hostname,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "value": alert.value,
        "starts_at": timestamp(alert.starts_at),
        "ends_at": timestamp(alert.ends_at),
        "escalated_from": alert.escalated_from,
        "acknowledged_by": alert.acknowledged_by,
    }


def rmm_body(notification: Notification, external_url: str, max_alerts: int = 0) -> dict[str, Any]:
    """Return our JSON body for `notification`."""
    alerts = notification.alerts[:max_alerts] if max_alerts else notification.alerts
    return {
        "version": BODY_VERSION,
        "receiver": notification.receiver,
        "status": notification.status,
        "group_key": notification.group_key,
        "group_labels": dict(notification.group_labels),
        "alerts": [alert_body(alert) for alert in alerts],
        "truncated_alerts": len(notification.alerts) - len(alerts),
        "external_url": external_url,
    }


def fingerprint(labels: dict[str, str]) -> str:
    """Return a stable 16-hex-digit identity of a label set, as Alertmanager shows one."""
    canonical = "\x00".join(f"{name}\x01{labels[name]}" for name in sorted(labels))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _am_labels(alert: AlertNotice) -> dict[str, str]:
    labels = all_labels(alert)
    labels["alertname"] = labels.pop("rule")
    labels["agent"] = labels.pop("agent_id")
    return labels


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def alertmanager_body(
    notification: Notification, external_url: str, max_alerts: int = 0
) -> dict[str, Any]:
    """Return an Alertmanager webhook (version 4) body for `notification`."""
    alerts = notification.alerts[:max_alerts] if max_alerts else notification.alerts
    labels = [_am_labels(alert) for alert in notification.alerts]
    annotations = [dict(alert.annotations) for alert in notification.alerts]
    group_labels = {
        {"rule": "alertname", "agent_id": "agent"}.get(name, name): value
        for name, value in notification.group_labels.items()
    }
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": len(notification.alerts) - len(alerts),
        "status": notification.status,
        "receiver": notification.receiver,
        "groupLabels": group_labels,
        "commonLabels": _common(labels),
        "commonAnnotations": _common(annotations),
        "externalURL": external_url,
        "alerts": [
            {
                "status": alert.status,
                "labels": labels[index],
                "annotations": annotations[index],
                "startsAt": timestamp(alert.starts_at),
                "endsAt": timestamp(alert.ends_at) or _ZERO_TIME,
                "generatorURL": external_url,
                "fingerprint": fingerprint(labels[index]),
            }
            for index, alert in enumerate(alerts)
        ],
    }


class WebhookNotifier:
    """POST each notification as JSON to a URL."""

    name: ClassVar[str] = "webhook"

    def __init__(self, receiver: str, settings: WebhookSettings, deps: NotifierDeps) -> None:
        self.receiver = receiver
        self.settings = settings
        self.deps = deps

    @classmethod
    def parse_settings(cls, section: Section) -> WebhookSettings:
        """Read url, format, headers, timeout and max_alerts."""
        url = section.text("url")
        url = section.check(section.value_node("url"), lambda: check_url(url), url)
        return WebhookSettings(
            url=url,
            format=section.choice("format", FORMATS, "rmm"),
            headers=section.text_map("headers"),
            timeout=section.seconds("timeout", 10.0, minimum=0.001),
            max_alerts=section.integer("max_alerts", 0),
        )

    @classmethod
    def create(
        cls, receiver: str, settings: WebhookSettings, deps: NotifierDeps
    ) -> WebhookNotifier:
        """Return a webhook notifier for `receiver`."""
        return cls(receiver, settings, deps)

    async def send(self, notification: Notification) -> None:
        """POST the notification; raise NotifyError on failure."""
        build = alertmanager_body if self.settings.format == "alertmanager" else rmm_body
        body = build(notification, self.deps.external_url, self.settings.max_alerts)
        await post_json(
            self.deps.http,
            self.receiver,
            self.settings.url,
            body,
            self.settings.timeout,
            self.settings.headers,
        )
