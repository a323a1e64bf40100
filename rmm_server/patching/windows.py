"""Patch windows: when they open, as APScheduler jobs in the server's own database.

A patch policy's schedule (model.PatchSchedule) is a 5-field cron or "the Nth weekday of the
month + K days" (Patch Tuesday + 3), read in the site's time zone, with a duration. Agents whose
schedules and zones are the same share one window; each window is one APScheduler job in the
`patch_jobs` table of the server's database (SQLite or PostgreSQL), so a schedule survives a
restart. A job's misfire grace is the window's duration and it coalesces: a window whose start
passed while the server was down still opens when the server comes back inside it, once, and
one whose end passed is not opened at all.

Only the leading replica runs the window scheduler (rmm_server/cluster.py): the job store is
shared, and APScheduler 3 takes no lock on a due job, so two schedulers would open a window twice.
Every decision reads `clock`, never APScheduler's own time: tests move the clock and call
`PatchWindows.open()` and the rollout's `tick()` themselves.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from sqlalchemy.engine import Engine

from rmm_common.errors import ConfigError
from rmm_server.cron import crontab_trigger
from rmm_server.patching.model import SITE_TIME_ZONE, WEEKDAYS, PatchSchedule

log = logging.getLogger(__name__)

# The job store's table (declared in storage/schema.py with APScheduler's own columns, created
# by a migration like every other table).
JOBS_TABLE = "patch_jobs"
JOB_PREFIX = "patch-window:"
DEFAULT_ZONE = "UTC"
# How far ahead an Nth-weekday trigger looks for its next firing before it says "never".
MAX_MONTHS_AHEAD = 24

Clock = Callable[[], float]
Opener = Callable[[str], Awaitable[None]]


def zone(name: str) -> ZoneInfo:
    """Return the IANA time zone `name`; raise ConfigError naming it and the fix."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"time zone {name!r} is unknown: use an IANA name like Europe/Berlin"
        ) from None


def parse_time_of_day(text: str) -> tuple[int, int]:
    """Return (hour, minute) of "HH:MM"; raise ConfigError naming the text."""
    try:
        hour_text, minute_text = text.split(":")
        hour, minute = int(hour_text), int(minute_text)
    except ValueError:
        raise ConfigError(f"time {text!r} is not HH:MM (24-hour clock, e.g. 02:30)") from None
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ConfigError(f"time {text!r} is not HH:MM (24-hour clock, e.g. 02:30)")
    return hour, minute


def nth_weekday(year: int, month: int, nth: int, weekday: int) -> int | None:
    """Return the day of the month of its `nth` `weekday` (0 Monday; nth -1: the last), or None
    when the month has no such day (a fifth Tuesday)."""
    days = [
        week[weekday]
        for week in calendar.Calendar().monthdayscalendar(year, month)
        if week[weekday] != 0
    ]
    if nth == -1:
        return days[-1]
    return days[nth - 1] if 1 <= nth <= len(days) else None


class NthWeekdayTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no types
    """Fire on the Nth weekday of every month plus K days at HH:MM local time.

    "Patch Tuesday + 3" is nth=2, weekday=1 (Tuesday), offset_days=3: the second Tuesday's
    Friday, which in some months falls in the next week and once a year in the next month.
    The offset is added to the local date, so the wall-clock time stays the same across a
    daylight-saving change.
    """

    __slots__ = ("hour", "minute", "nth", "offset_days", "timezone", "weekday")

    def __init__(
        self, nth: int, weekday: int, hour: int, minute: int, offset_days: int, timezone: ZoneInfo
    ) -> None:
        if nth not in (-1, 1, 2, 3, 4, 5):
            raise ConfigError(f"nth {nth} is not 1 to 5 or -1 (the last one in the month)")
        if not 0 <= weekday <= 6:
            raise ConfigError(f"weekday {weekday} is not 0 (Monday) to 6 (Sunday)")
        self.nth = nth
        self.weekday = weekday
        self.hour = hour
        self.minute = minute
        self.offset_days = offset_days
        self.timezone = timezone

    def _fire_in(self, year: int, month: int) -> datetime | None:
        day = nth_weekday(year, month, self.nth, self.weekday)
        if day is None:
            return None
        local = datetime(year, month, day, self.hour, self.minute) + timedelta(
            days=self.offset_days
        )
        # Wall time in the zone; a time skipped by a DST change comes out an hour later, as
        # zoneinfo's fold=0 reading of it does.
        aware = local.replace(tzinfo=self.timezone)
        return aware.astimezone(UTC).astimezone(self.timezone)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """Return the first firing at or after `now` (and after `previous_fire_time`)."""
        floor = (
            now
            if previous_fire_time is None
            else max(now, previous_fire_time + timedelta(microseconds=1))
        )
        # The base day of a firing lies up to offset_days (and a month) before it.
        start = (floor - timedelta(days=max(self.offset_days, 0) + 1)).astimezone(self.timezone)
        year, month = start.year, start.month
        for _ in range(MAX_MONTHS_AHEAD + abs(self.offset_days) // 28 + 2):
            fire = self._fire_in(year, month)
            if fire is not None and fire >= floor:
                return fire
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "version": 1,
            "nth": self.nth,
            "weekday": self.weekday,
            "hour": self.hour,
            "minute": self.minute,
            "offset_days": self.offset_days,
            "timezone": self.timezone.key,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("version", 1) > 1:
            raise ValueError(
                f"a patch window job was stored by a newer server (trigger version "
                f"{state['version']}); upgrade this server"
            )
        self.nth = state["nth"]
        self.weekday = state["weekday"]
        self.hour = state["hour"]
        self.minute = state["minute"]
        self.offset_days = state["offset_days"]
        self.timezone = ZoneInfo(state["timezone"])

    def __str__(self) -> str:
        nth = "last" if self.nth == -1 else f"#{self.nth}"
        return (
            f"nth_weekday[{nth} {WEEKDAYS[self.weekday]} + {self.offset_days} days at "
            f"{self.hour:02d}:{self.minute:02d} {self.timezone.key}]"
        )

    def __repr__(self) -> str:
        return f"<NthWeekdayTrigger {self}>"


def parse_site_zones(values: Iterable[str]) -> dict[str, str]:
    """Return {"client/site": zone} of --site-time-zone CLIENT/SITE=ZONE values; ConfigError
    naming a malformed one or an unknown zone."""
    zones: dict[str, str] = {}
    for value in values:
        site, _, zone_key = value.partition("=")
        client, slash, site_name = site.strip().partition("/")
        if not (slash and client and site_name and zone_key.strip()):
            raise ConfigError(
                f"--site-time-zone {value!r}: give CLIENT/SITE=ZONE, e.g. acme/berlin=Europe/Berlin"
            )
        zone(zone_key.strip())  # raises naming an unknown zone
        zones[f"{client}/{site_name}"] = zone_key.strip()
    return zones


def zone_name(schedule: PatchSchedule, site_zone: str) -> str:
    """Return the IANA zone a schedule's times are read in: the site's, or its own."""
    return site_zone if schedule.time_zone == SITE_TIME_ZONE else schedule.time_zone


def trigger_for(schedule: PatchSchedule, zone_key: str) -> BaseTrigger:
    """Return the APScheduler trigger of `schedule` in zone `zone_key`; ConfigError if invalid."""
    tz = zone(zone_key)
    where = f"schedule {schedule.name!r}" + (f" ({schedule.source})" if schedule.source else "")
    if schedule.duration_seconds <= 0:
        raise ConfigError(f"{where}: duration must be positive")
    if schedule.cron is not None:
        try:
            return crontab_trigger(schedule.cron, tz)
        except ValueError as exc:
            raise ConfigError(
                f"{where}: {schedule.cron!r} is not a 5-field cron expression: {exc}"
            ) from None
    if schedule.nth is None or schedule.weekday is None:
        raise ConfigError(f"{where}: give either cron, or nth and weekday")
    if schedule.weekday not in WEEKDAYS:
        raise ConfigError(f"{where}: weekday {schedule.weekday!r} is not one of {WEEKDAYS}")
    hour, minute = parse_time_of_day(schedule.time)
    return NthWeekdayTrigger(
        schedule.nth, WEEKDAYS.index(schedule.weekday), hour, minute, schedule.offset_days, tz
    )


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


@dataclass(frozen=True)
class PatchWindow:
    """One window: a schedule read in one zone, and the agents it patches."""

    key: str  # "policy/schedule@zone": stable across reloads while the schedule is the same
    schedule: PatchSchedule
    zone: str
    agent_ids: tuple[str, ...]
    trigger: BaseTrigger = field(compare=False, repr=False)

    @property
    def duration(self) -> float:
        return self.schedule.duration_seconds

    @property
    def fingerprint(self) -> str:
        """Return what changes the job: the trigger's definition and the duration."""
        text = f"{self.trigger}|{self.duration:g}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def current(self, now: float) -> tuple[float, float] | None:
        """Return (start, end) of the occurrence open at `now`, or None."""
        # The occurrence open at `now` began at most `duration` ago: the first firing after that.
        earliest = _utc(now - self.duration) + timedelta(microseconds=1)
        start = self.trigger.get_next_fire_time(None, earliest)
        if start is None:
            return None
        began = start.timestamp()
        end = began + self.duration
        return (began, end) if began <= now < end else None

    def next_start(self, now: float) -> float | None:
        """Return when the next occurrence starts after `now`, or None."""
        start = self.trigger.get_next_fire_time(None, _utc(now) + timedelta(microseconds=1))
        return start.timestamp() if start is not None else None


def window_key(schedule: PatchSchedule, zone_key: str) -> str:
    """Return the window's key: its policy, its schedule's name and its zone."""
    return f"{schedule.policy or '-'}/{schedule.name}@{zone_key}"


def plan_windows(
    assignments: Iterable[tuple[str, PatchSchedule, str]],
) -> tuple[dict[str, PatchWindow], list[str]]:
    """Group (agent id, schedule, site zone) into windows; return them and the problems.

    A schedule that cannot fire (an unknown zone, a broken expression) is left out and named;
    the policy loader refuses those at load, so this only guards the job store.
    """
    agents: dict[str, list[str]] = {}
    schedules: dict[str, tuple[PatchSchedule, str]] = {}
    problems: list[str] = []
    for agent_id, schedule, site_zone in assignments:
        zone_key = zone_name(schedule, site_zone)
        key = window_key(schedule, zone_key)
        agents.setdefault(key, []).append(agent_id)
        schedules[key] = (schedule, zone_key)
    windows: dict[str, PatchWindow] = {}
    for key, (schedule, zone_key) in schedules.items():
        try:
            trigger = trigger_for(schedule, zone_key)
        except ConfigError as exc:
            problems.append(f"patch window {key}: {exc}")
            continue
        windows[key] = PatchWindow(key, schedule, zone_key, tuple(sorted(agents[key])), trigger)
    return windows, problems


# The schedulers of this process by instance name: a stored job names its instance and window
# (both plain strings, so the pickled job stays valid across restarts and code changes).
_OPENERS: dict[str, Opener] = {}


async def open_window_job(instance: str, key: str) -> None:
    """Open window `key` of scheduler `instance` (what every stored job calls)."""
    opener = _OPENERS.get(instance)
    if opener is None:
        log.error("patch window %s fired, but no patch scheduler %r runs here", key, instance)
        return
    await opener(key)


class PatchScheduler:
    """The window jobs in the database: started while this replica leads, stopped otherwise."""

    def __init__(self, engine: Engine, opener: Opener, instance: str = "server") -> None:
        self.engine = engine
        self.opener = opener
        self.instance = instance
        self.scheduler: AsyncIOScheduler | None = None
        self.windows: dict[str, PatchWindow] = {}
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self.scheduler is not None

    async def lead(self, leading: bool) -> None:
        """Start the scheduler when this replica leads, stop it when it no longer does."""
        async with self._lock:
            if leading and self.scheduler is None:
                await self._start()
            elif not leading and self.scheduler is not None:
                self._stop()

    async def _start(self) -> None:
        _OPENERS[self.instance] = self.opener
        scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename=JOBS_TABLE)},
            timezone=UTC,
        )
        # Paused: the jobs are brought in line with the policies before any due one runs, so a
        # window missed while the server was down runs with its stored (past) run time.
        # In the loop's thread (APScheduler takes the running loop); it creates the job table
        # only where the migration has not (a quick query when it exists).
        scheduler.start(paused=True)
        self.scheduler = scheduler
        await asyncio.to_thread(self._sync, self.windows)
        scheduler.resume()
        log.info("patch window scheduler started with %d windows", len(self.windows))

    def _stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        _OPENERS.pop(self.instance, None)

    async def stop(self) -> None:
        """Stop the scheduler (the server stops)."""
        async with self._lock:
            self._stop()

    async def set_windows(self, windows: Mapping[str, PatchWindow]) -> None:
        """Take the windows the policies now define; update the stored jobs when leading."""
        async with self._lock:
            self.windows = dict(windows)
            if self.scheduler is not None:
                await asyncio.to_thread(self._sync, self.windows)

    def _sync(self, windows: Mapping[str, PatchWindow]) -> None:
        """Add the jobs of new or changed windows and remove those of windows gone.

        A job whose window is unchanged is left alone: replacing it would compute its next run
        from now and lose the missed run a restart inside a window must still make. A new or
        changed window that is open right now runs at once (its run time is the occurrence's
        start): the policy says to patch during these hours, and these hours are now.
        """
        scheduler = self.scheduler
        assert scheduler is not None
        stored = {job.id: job for job in scheduler.get_jobs() if job.id.startswith(JOB_PREFIX)}
        for key, window in windows.items():
            job_id = JOB_PREFIX + key
            job = stored.pop(job_id, None)
            if job is not None and job.name == window.fingerprint:
                continue
            extra: dict[str, Any] = {}
            occurrence = window.current(time.time())
            if occurrence is not None:
                extra["next_run_time"] = _utc(occurrence[0])
            scheduler.add_job(
                open_window_job,
                window.trigger,
                args=(self.instance, key),
                id=job_id,
                name=window.fingerprint,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                # A start missed while the server was down still opens the window while it is
                # open; the opener checks the window against `clock` again anyway.
                misfire_grace_time=max(1, int(window.duration)),
                **extra,
            )
            log.info("patch window %s scheduled: %s", key, window.schedule.describe())
        for job_id in stored:
            scheduler.remove_job(job_id)
            log.info("patch window %s removed: no policy schedules it any more", job_id)

    def next_run_times(self) -> dict[str, float | None]:
        """Return each stored window's next run (unix time), by window key."""
        if self.scheduler is None:
            return {}
        return {
            job.id.removeprefix(JOB_PREFIX): (
                job.next_run_time.timestamp() if job.next_run_time is not None else None
            )
            for job in self.scheduler.get_jobs()
            if job.id.startswith(JOB_PREFIX)
        }


def default_clock() -> float:
    """Return the time now (unix seconds)."""
    return time.time()
