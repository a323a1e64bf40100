"""What keeps an alert quiet: silences (ad hoc, by matchers) and maintenance windows (scheduled).

Both suppress notifications only: a silenced or in-maintenance alert still exists, is listed and
marked, so the technician who opens the console sees the whole truth.

Maintenance windows follow the site's wall clock: a window "0 2 * * *" for 2h in Europe/Berlin
runs 02:00-04:00 local time on both sides of a daylight-saving change (APScheduler's cron trigger
does the calendar arithmetic; on the spring-forward night a window at a missing hour starts when
the clock jumps).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from rmm_common.errors import InvalidArgument

MATCHER_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!=|=)\s*(.*?)\s*$")
# Alert fields a matcher may name besides the alert's series labels.
ALERT_FIELDS = ("rule", "client", "site", "agent", "hostname", "severity", "tier")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One `name=value`, `name!=value` or `name=~regex` condition on an alert."""

    name: str
    op: str
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Say whether the alert's fields satisfy this matcher."""
        actual = fields.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        return re.fullmatch(self.value, actual) is not None

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def parse_matchers(text: str) -> list[Matcher]:
    """Parse `rule=DiskLow,client=acme,mountpoint=~/var.*` into matchers."""
    matchers = []
    for part in text.split(","):
        if not part.strip():
            continue
        found = MATCHER_RE.match(part)
        if not found:
            raise InvalidArgument(
                f"matcher {part.strip()!r} is not name=value, name!=value or name=~regex"
            )
        name, op, value = found.groups()
        value = value.strip("\"'")
        if op == "=~":
            try:
                re.compile(value)
            except re.error as exc:
                raise InvalidArgument(f"matcher {part.strip()!r}: bad regex: {exc}") from None
        matchers.append(Matcher(name, op, value))
    if not matchers:
        raise InvalidArgument("a silence needs at least one matcher, e.g. --match rule=DiskLow")
    return matchers


def format_matchers(matchers: Sequence[Matcher]) -> str:
    """Return matchers in the form parse_matchers reads."""
    return ",".join(str(m) for m in matchers)


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float

    def active(self, now: float) -> bool:
        """Say whether the silence is in force at `now`."""
        return self.starts_at <= now < self.ends_at

    def silences(self, fields: Mapping[str, str], now: float) -> bool:
        """Say whether this silence quiets an alert with these fields now."""
        return self.active(now) and all(m.matches(fields) for m in self.matchers)


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A recurring (cron) or one-off quiet period for a scope of agents."""

    id: str
    name: str
    duration_seconds: float
    timezone: str
    created_by: str
    created_at: float
    schedule: str = ""  # 5-field cron in `timezone`; empty for a one-off window
    start_at: float | None = None  # one-off windows: unix time
    clients: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    comment: str = ""
    ended_at: float | None = None
    _trigger: CronTrigger | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, **values: object) -> MaintenanceWindow:
        """Check and build a window; raise InvalidArgument naming what is wrong."""
        window = cls(**values)  # type: ignore[arg-type]
        if window.duration_seconds <= 0:
            raise InvalidArgument("a maintenance window needs a positive --duration")
        try:
            zone = ZoneInfo(window.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(
                f"time zone {window.timezone!r} is unknown: use an IANA name like Europe/Berlin"
            ) from None
        if bool(window.schedule) == (window.start_at is not None):
            raise InvalidArgument("give either a cron --schedule or a one-off --start, not both")
        if window.schedule:
            try:
                trigger = CronTrigger.from_crontab(window.schedule, timezone=zone)
            except ValueError as exc:
                raise InvalidArgument(
                    f"schedule {window.schedule!r} is not a 5-field cron expression: {exc}"
                ) from None
            object.__setattr__(window, "_trigger", trigger)
        return window

    def current(self, now: float) -> tuple[float, float] | None:
        """Return (start, end) of the occurrence in force at `now`, or None."""
        if self.ended_at is not None and self.ended_at <= now:
            return None
        if self.start_at is not None:
            end = self.start_at + self.duration_seconds
            return (self.start_at, end) if self.start_at <= now < end else None
        assert self._trigger is not None
        # The occurrence in force began at most `duration` ago: the first firing after that.
        earliest = datetime.fromtimestamp(now - self.duration_seconds, UTC) + timedelta(
            microseconds=1
        )
        start = self._trigger.get_next_fire_time(None, earliest)
        if start is None:
            return None
        began = start.timestamp()
        end = began + self.duration_seconds
        return (began, end) if began <= now < end else None

    def next_start(self, now: float) -> float | None:
        """Return when the next occurrence starts after `now`, or None."""
        if self.ended_at is not None and self.ended_at <= now:
            return None
        if self.start_at is not None:
            return self.start_at if self.start_at > now else None
        assert self._trigger is not None
        start = self._trigger.get_next_fire_time(None, datetime.fromtimestamp(now, UTC))
        return start.timestamp() if start else None

    def covers(self, client: str, site: str, agent_id: str, tags: frozenset[str]) -> bool:
        """Say whether an agent is in this window's scope (an empty scope covers everyone)."""
        if self.clients and client not in self.clients:
            return False
        if self.sites and site not in self.sites:
            return False
        if self.agents and agent_id not in self.agents:
            return False
        return not (self.tags and not tags.intersection(self.tags))
