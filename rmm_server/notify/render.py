"""Human-readable forms of a notification shared by email and chat notifiers.

Most of a notification is text an agent supplied (hostname, series labels such as a mountpoint,
annotations rendered from them): every such value goes through `shown()` here, so none can
break a line or hide a character, and each notifier then keeps it out of its own markup (Slack:
plain_text objects and `escape`; Teams: TextRuns, which no Markdown reaches; email: html.escape
and a one-line subject).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from rmm_common.agent_words import printable_name
from rmm_server.notify.model import AlertNotice, Notification

# Chat messages stay readable (and under Slack's and Teams' size limits) with this many alerts.
MAX_LISTED_ALERTS = 20


def timestamp(seconds: float | None) -> str | None:
    """Return unix `seconds` as RFC 3339 in UTC, or None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def shown(value: str) -> str:
    """Return agent-supplied `value` on one line, with what cannot be seen (newlines, bidi
    overrides, zero-width characters) shown as escapes: a label value holding a newline cannot
    add a made-up alert line to a message."""
    return printable_name(value)


def _common(notification: Notification, name: str) -> str:
    if name in notification.group_labels:
        return shown(notification.group_labels[name])
    values = {str(getattr(alert, name)) for alert in notification.alerts}
    return shown(values.pop()) if len(values) == 1 else ""


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
    listed = {"rule", "alertname", "client", "site"}
    parts.extend(
        shown(value)
        for name, value in notification.group_labels.items()
        if name not in listed and value
    )
    return " ".join(parts)


def alert_line(alert: AlertNotice) -> str:
    """Return one line describing `alert` for a technician."""
    host = shown(alert.hostname or alert.agent_id)
    where = f"{host} ({shown(alert.client)}/{shown(alert.site)})"
    extra = " ".join(
        f"{shown(name)}={shown(value)}" for name, value in sorted(alert.labels.items())
    )
    value = "" if alert.value is None else f" value={alert.value:g}"
    summary = shown(alert.annotations.get("summary", ""))
    text = f"[{shown(alert.severity)}/{shown(alert.tier)}] {shown(alert.rule)} on {where}"
    if extra:
        text += f" {extra}"
    text += value
    if summary:
        text += f": {summary}"
    if alert.escalated_from:
        text += f" (escalated from {shown(alert.escalated_from)})"
    if alert.acknowledged_by:
        text += f" (acknowledged by {shown(alert.acknowledged_by)})"
    return text


def description_lines(alert: AlertNotice) -> list[str]:
    """Return the alert's description (a policy's text with agent values in it), line by line,
    each line shown() so that only the policy's own line breaks remain."""
    return [shown(line) for line in alert.annotations.get("description", "").splitlines()]


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
            lines.extend(f"  {line}" for line in description_lines(alert))
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
            description = "<br>".join(html.escape(line) for line in description_lines(alert))
            out.append(
                f"<li>{html.escape(alert_line(alert))}<br><small>since "
                f"{html.escape(timestamp(alert.starts_at) or '')}</small>"
                + (f"<br>{description}" if description else "")
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
