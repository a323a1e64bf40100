"""The contract between the alert manager and the notifiers: notices, notifications, errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Generic, Literal, Protocol, TypeVar

import httpx

from rmm_common.errors import RmmError
from rmm_common.yamlnodes import Section

Status = Literal["firing", "resolved"]


class NotifyError(RmmError):
    """A notifier could not deliver a notification."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        # False when trying again cannot help (a 4xx answer, a refused recipient).
        self.retryable = retryable


@dataclass(frozen=True)
class AlertNotice:
    """One alert's state as the alert manager hands it over."""

    alert_id: str
    rule: str
    status: Status
    severity: str  # info | warning | critical
    tier: str  # L1 | L2 | L3: the alert's current escalation tier
    client: str
    site: str
    agent_id: str
    hostname: str
    labels: Mapping[str, str]  # rule labels + series labels (e.g. mountpoint)
    annotations: Mapping[str, str]  # rendered summary/description
    value: float | None
    starts_at: float  # unix seconds
    ends_at: float | None
    escalated_from: str | None = None  # e.g. "L1" when this notice is an escalation
    acknowledged_by: str | None = None


# What a matcher or group_by name reads from a notice besides its labels.
NOTICE_FIELDS = ("rule", "severity", "tier", "client", "site", "agent_id", "hostname")
FIELD_ALIASES = {"alertname": "rule", "agent": "agent_id"}


def notice_label(notice: AlertNotice, name: str) -> str:
    """Return the value `name` has for `notice`: a notice field first, else a label, else ""."""
    field = FIELD_ALIASES.get(name, name)
    if field in NOTICE_FIELDS:
        return str(getattr(notice, field))
    return notice.labels.get(name, "")


def all_labels(notice: AlertNotice) -> dict[str, str]:
    """Return the notice's fields and labels as one label set (fields win over labels)."""
    merged = dict(notice.labels)
    merged.update({field: str(getattr(notice, field)) for field in NOTICE_FIELDS})
    return merged


@dataclass(frozen=True)
class Notification:
    """One message for one receiver: the alerts of one group at one moment."""

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    alerts: tuple[AlertNotice, ...]
    status: Status  # firing if any alert fires

    @property
    def firing(self) -> tuple[AlertNotice, ...]:
        """Return the alerts that fire."""
        return tuple(alert for alert in self.alerts if alert.status == "firing")

    @property
    def resolved(self) -> tuple[AlertNotice, ...]:
        """Return the alerts that are resolved."""
        return tuple(alert for alert in self.alerts if alert.status == "resolved")


class Notifier(Protocol):
    """Something that delivers a notification to one receiver."""

    name: ClassVar[str]

    async def send(self, notification: Notification) -> None:
        """Deliver `notification`; raise NotifyError on failure."""


@dataclass(frozen=True)
class NotifierDeps:
    """What the dispatcher lends every notifier: shared clients and server facts."""

    http: httpx.AsyncClient
    external_url: str = ""


SettingsT = TypeVar("SettingsT")


class NotifierType(Protocol, Generic[SettingsT]):
    """A registry entry: parses its receiver settings and builds a notifier from them."""

    name: str

    @classmethod
    def parse_settings(cls, section: Section) -> SettingsT:
        """Read this notifier's settings from its section of the config file."""

    @classmethod
    def create(cls, receiver: str, settings: SettingsT, deps: NotifierDeps) -> Notifier:
        """Return a notifier for `receiver` with `settings`."""
