"""Human-readable forms of a notification shared by email and chat notifiers."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from rmm_server.notify.model import AlertNotice, Notification

# Chat messages stay readable (and under Slack's and Teams' size limits) with this many alerts.
MAX_LISTED_ALERTS = 20


def timestamp(seconds: float | None) -> str | None:
    """Return unix `seconds` as RFC 3339 in UTC, or None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _common(notification: Notification, name: str) -> str:
    if name in notification.group_labels:
        return notification.group_labels[name]
    values = {str(getattr(alert, name)) for alert in notification.alerts}
    return values.pop() if len(values) == 1 else ""


def title(notification: Notification) -> str:
    """Return a subject like `[FIRING:3] DiskLow acme/hq` or `[RESOLVED] DiskLow acme/hq`."""
    firing = len(notification.firing)
    head = f"[FIRING:{firing}]" if notification.status == "firing" else "[RESOLVED]"
    parts = [head]
    rule = _common(notification, "rule")
    if rule:
        parts.append(rule)
    place = "/".join(
        part for part in (_common(notification, "client"), _common(notification, "site")) if part
    )
    if place:
        parts.append(place)
    shown = {"rule", "alertname", "client", "site"}
    parts.extend(
        value for name, value in notification.group_labels.items() if name not in shown and value
    )
    return " ".join(parts)


def alert_line(alert: AlertNotice) -> str:
    """Return one line describing `alert` for a technician."""
    where = f"{alert.hostname or alert.agent_id} ({alert.client}/{alert.site})"
    extra = " ".join(f"{name}={value}" for name, value in sorted(alert.labels.items()))
    value = "" if alert.value is None else f" value={alert.value:g}"
    summary = alert.annotations.get("summary", "")
    text = f"[{alert.severity}/{alert.tier}] {alert.rule} on {where}"
    if extra:
        text += f" {extra}"
    text += value
    if summary:
        text += f": {summary}"
    if alert.escalated_from:
        text += f" (escalated from {alert.escalated_from})"
    if alert.acknowledged_by:
        text += f" (acknowledged by {alert.acknowledged_by})"
    return text


def sections(notification: Notification) -> list[tuple[str, list[AlertNotice]]]:
    """Return the non-empty ("Firing", alerts) and ("Resolved", alerts) sections."""
    found = [("Firing", list(notification.firing)), ("Resolved", list(notification.resolved))]
    return [(name, alerts) for name, alerts in found if alerts]


def text_body(notification: Notification, external_url: str = "") -> str:
    """Return a plain-text message listing every alert of the notification."""
    lines = [title(notification), ""]
    for name, alerts in sections(notification):
        lines.append(f"{name} ({len(alerts)}):")
        for alert in alerts:
            lines.append(f"- {alert_line(alert)}")
            since = timestamp(alert.starts_at)
            lines.append(
                f"  since {since}"
                + (f", until {timestamp(alert.ends_at)}" if alert.ends_at else "")
            )
            description = alert.annotations.get("description")
            if description:
                lines.append(f"  {description}")
        lines.append("")
    if external_url:
        lines.append(f"Server: {external_url}")
    return "\n".join(lines).rstrip() + "\n"


def html_body(notification: Notification, external_url: str = "") -> str:
    """Return a simple HTML message (escaped) listing every alert of the notification."""
    out = [f"<h2>{html.escape(title(notification))}</h2>"]
    for name, alerts in sections(notification):
        out.append(f"<h3>{name} ({len(alerts)})</h3><ul>")
        for alert in alerts:
            description = alert.annotations.get("description", "")
            out.append(
                f"<li>{html.escape(alert_line(alert))}<br><small>since "
                f"{html.escape(timestamp(alert.starts_at) or '')}</small>"
                + (f"<br>{html.escape(description)}" if description else "")
                + "</li>"
            )
        out.append("</ul>")
    if external_url:
        url = html.escape(external_url, quote=True)
        out.append(f'<p><a href="{url}">{url}</a></p>')
    return "<html><body>" + "".join(out) + "</body></html>\n"


def listed(alerts: list[AlertNotice] | tuple[AlertNotice, ...]) -> tuple[list[AlertNotice], int]:
    """Return the alerts to show in a chat message and how many were left out."""
    shown = list(alerts[:MAX_LISTED_ALERTS])
    return shown, len(alerts) - len(shown)
