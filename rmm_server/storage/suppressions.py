"""Silences, maintenance windows and failed notifications: the records and their storage.

What keeps an alert quiet: silences (ad hoc, by matchers) and maintenance windows (scheduled).
Both suppress notifications only: a silenced or in-maintenance alert still exists, is listed and
marked, so the technician who opens the console sees the whole truth.

Maintenance windows follow the site's wall clock: a window "0 2 * * *" for 2h in Europe/Berlin
runs 02:00-04:00 local time on both sides of a daylight-saving change (APScheduler's cron trigger
does the calendar arithmetic; on the spring-forward night a window at a missing hour starts when
the clock jumps).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import insert, select, update

from rmm_common.errors import InvalidArgument
from rmm_server.cron import crontab_trigger
from rmm_server.storage import schema
from rmm_server.storage.store import Store

log = logging.getLogger(__name__)

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


def check_silence_scope(matchers: Sequence[Matcher]) -> None:
    """Refuse a new silence that picks agents by hostname without pinning their client.

    A hostname is what an agent reports of itself, and any agent of any client can report
    another's: `hostname=web-01` alone would silence every client's web-01, the one meant and
    any that names itself like it. A silence stored before this rule loads flagged and quiets
    nothing (stored_silence_problem).
    """
    by_hostname = [m for m in matchers if m.name == "hostname"]
    if not by_hostname:
        return
    if any(m.name == "client" and m.op == "=" and m.value for m in matchers):
        return
    raise InvalidArgument(
        f"matcher {str(by_hostname[0])!r} picks agents by hostname, which an agent of any client "
        "can report of itself: add the client whose host is meant "
        f"(--match '{format_matchers(matchers)},client=NAME'), or match the agent by id "
        "(agent=ID)"
    )


# An agent id as the server makes it (uuid4().hex), which alerts and windows carry.
FULL_AGENT_ID = re.compile(r"^[0-9a-f]{32}$")


def stored_silence_problem(silence_id: str, matchers: Sequence[Matcher]) -> str:
    """Return why a silence stored by an earlier release may not act ("" when it may).

    Releases before the rule of check_silence_scope stored `hostname=...` silences without a
    client (they would quiet that hostname in every client, whoever reports it), and agent=
    silences holding a hostname or an id's start (alerts carry full ids: they quieted nothing).
    Such a silence is kept and listed, flagged, and quiets nothing until replaced.
    """
    try:
        check_silence_scope(matchers)
    except InvalidArgument as exc:
        return (
            f"silence {silence_id} was stored by an earlier release and is ignored: {exc}; "
            f"expire it (rmm silences expire {silence_id}) and silence again"
        )
    for matcher in matchers:
        if matcher.name == "agent" and matcher.op == "=" and not FULL_AGENT_ID.match(matcher.value):
            return (
                f"silence {silence_id} was stored by an earlier release and is ignored: matcher "
                f"{str(matcher)!r} is not a full agent id, and alerts carry full ids; expire it "
                f"(rmm silences expire {silence_id}) and silence again with agent=ID or its start"
            )
    return ""


def stored_window_problem(window_id: str, agents: Sequence[str]) -> str:
    """Return why a window stored by an earlier release names agents it cannot match ("" when
    it names none such): windows made before --agent was resolved at creation kept the word
    given (a hostname, an id's start), and a window compares full agent ids."""
    words = [agent for agent in agents if not FULL_AGENT_ID.match(agent)]
    if not words:
        return ""
    return (
        f"maintenance window {window_id} was stored by an earlier release and names "
        f"{', '.join(repr(word) for word in words[:5])}, which are not agent ids: it covers no "
        f"such agent; end it (rmm maintenance end {window_id}) and add it again with --agent"
    )


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
    problem: str = ""  # why a silence stored by an earlier release is ignored

    def active(self, now: float) -> bool:
        """Say whether the silence is in force at `now` (an ignored one never is)."""
        return not self.problem and self.starts_at <= now < self.ends_at

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
                trigger = crontab_trigger(window.schedule, zone)
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


@dataclass(frozen=True, slots=True)
class NotificationFailure:
    at: float
    receiver: str
    notifier: str
    error: str
    status: str
    group_key: str
    alert_ids: tuple[str, ...]


class SuppressionStore:
    """Read and write silences, maintenance windows and notification failures."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Each stored record's problem is logged once, not at every refresh.
        self._warned: set[str] = set()

    def _warn_once(self, key: str, problem: str) -> None:
        if problem and key not in self._warned:
            self._warned.add(key)
            log.warning("%s", problem)

    def add_silence(self, silence: Silence) -> None:
        """Store a new silence."""
        with self.store.transaction("create a silence") as conn:
            conn.execute(
                insert(schema.silences).values(
                    id=silence.id,
                    matchers=format_matchers(silence.matchers),
                    starts_at=silence.starts_at,
                    ends_at=silence.ends_at,
                    created_by=silence.created_by,
                    comment=silence.comment,
                    created_at=silence.created_at,
                )
            )

    def expire_silence(self, silence_id: str, now: float) -> None:
        """End a silence now (if it has not ended already)."""
        table = schema.silences
        with self.store.transaction(f"expire silence {silence_id}") as conn:
            conn.execute(
                update(table)
                .where(table.c.id == silence_id, table.c.ends_at > now)
                .values(ends_at=now)
            )

    def silences(self) -> list[Silence]:
        """Return every silence, newest first."""
        table = schema.silences
        with self.store.transaction("list silences") as conn:
            rows = list(conn.execute(select(table).order_by(table.c.created_at.desc())).mappings())
        silences = []
        for row in rows:
            matchers = tuple(parse_matchers(row["matchers"]))
            problem = stored_silence_problem(row["id"], matchers)
            if row["ends_at"] > time.time():  # an expired one needs no fixing
                self._warn_once(f"silence:{row['id']}", problem)
            silences.append(
                Silence(
                    id=row["id"],
                    matchers=matchers,
                    starts_at=row["starts_at"],
                    ends_at=row["ends_at"],
                    created_by=row["created_by"],
                    comment=row["comment"],
                    created_at=row["created_at"],
                    problem=problem,
                )
            )
        return silences

    def add_window(self, window: MaintenanceWindow) -> None:
        """Store a new maintenance window."""
        scope = {
            "clients": list(window.clients),
            "sites": list(window.sites),
            "agents": list(window.agents),
            "tags": list(window.tags),
        }
        with self.store.transaction("add a maintenance window") as conn:
            conn.execute(
                insert(schema.maintenance_windows).values(
                    id=window.id,
                    name=window.name,
                    schedule=window.schedule,
                    start_at=window.start_at,
                    duration_seconds=window.duration_seconds,
                    timezone=window.timezone,
                    scope=json.dumps(scope),
                    created_by=window.created_by,
                    comment=window.comment,
                    created_at=window.created_at,
                    ended_at=window.ended_at,
                )
            )

    def end_window(self, window_id: str, now: float) -> None:
        """End a maintenance window for good."""
        table = schema.maintenance_windows
        with self.store.transaction(f"end maintenance window {window_id}") as conn:
            conn.execute(
                update(table)
                .where(table.c.id == window_id, table.c.ended_at.is_(None))
                .values(ended_at=now)
            )

    def windows(self) -> list[MaintenanceWindow]:
        """Return every maintenance window, newest first."""
        table = schema.maintenance_windows
        with self.store.transaction("list maintenance windows") as conn:
            rows = list(conn.execute(select(table).order_by(table.c.created_at.desc())).mappings())
        windows = []
        for row in rows:
            scope = json.loads(row["scope"])
            if row["ended_at"] is None:
                problem = stored_window_problem(row["id"], scope.get("agents", ()))
                self._warn_once(f"window:{row['id']}", problem)
            windows.append(
                MaintenanceWindow.create(
                    id=row["id"],
                    name=row["name"],
                    schedule=row["schedule"],
                    start_at=row["start_at"],
                    duration_seconds=row["duration_seconds"],
                    timezone=row["timezone"],
                    clients=tuple(scope.get("clients", ())),
                    sites=tuple(scope.get("sites", ())),
                    agents=tuple(scope.get("agents", ())),
                    tags=tuple(scope.get("tags", ())),
                    created_by=row["created_by"],
                    comment=row["comment"],
                    created_at=row["created_at"],
                    ended_at=row["ended_at"],
                )
            )
        return windows

    def record_failure(self, failure: NotificationFailure) -> None:
        """Keep a notification that could not be delivered after its retries."""
        with self.store.transaction("record a failed notification") as conn:
            conn.execute(
                insert(schema.notification_failures).values(
                    at=failure.at,
                    receiver=failure.receiver,
                    notifier=failure.notifier,
                    error=failure.error,
                    status=failure.status,
                    group_key=failure.group_key,
                    alert_ids=json.dumps(list(failure.alert_ids)),
                )
            )

    def failures(self, limit: int) -> Sequence[NotificationFailure]:
        """Return the most recent failed notifications."""
        table = schema.notification_failures
        with self.store.transaction("list failed notifications") as conn:
            rows = conn.execute(select(table).order_by(table.c.at.desc()).limit(limit)).mappings()
            return [
                NotificationFailure(
                    at=row["at"],
                    receiver=row["receiver"],
                    notifier=row["notifier"],
                    error=row["error"],
                    status=row["status"],
                    group_key=row["group_key"],
                    alert_ids=tuple(json.loads(row["alert_ids"])),
                )
                for row in rows
            ]
