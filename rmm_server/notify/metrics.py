"""The dispatcher's Prometheus metrics, registered on a registry the caller passes in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LABELS = ("receiver", "notifier")


class NotifyMetrics:
    """Counters and a histogram for notification delivery."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "rmm_notifications_sent_total",
            "Notifications delivered, by receiver and notifier type.",
            _LABELS,
            registry=registry,
        )
        self.failed = Counter(
            "rmm_notifications_failed_total",
            "Notifications given up on after every retry, by receiver and notifier type.",
            _LABELS,
            registry=registry,
        )
        self.retries = Counter(
            "rmm_notification_retries_total",
            "Delivery attempts that failed and were tried again, by receiver and notifier type.",
            _LABELS,
            registry=registry,
        )
        self.duration = Histogram(
            "rmm_notification_duration_seconds",
            "Time one delivery attempt took, by notifier type.",
            ("notifier",),
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=registry,
        )
