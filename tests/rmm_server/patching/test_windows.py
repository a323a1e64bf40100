"""Patch windows: when schedules fire (cron in a zone, Nth weekday + K days), which occurrence is
open, and the jobs in APScheduler's SQLAlchemy job store on SQLite and PostgreSQL: kept across a
restart, a start missed while the server was down opened once if the window is still open and not
at all when it is over."""

from __future__ import annotations

import asyncio
import functools
import pickle
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from rmm_common.errors import ConfigError
from rmm_server.patching.model import PatchSchedule
from rmm_server.patching.windows import (
    JOB_PREFIX,
    NthWeekdayTrigger,
    PatchScheduler,
    PatchWindow,
    nth_weekday,
    parse_site_zones,
    plan_windows,
    trigger_for,
)
from rmm_server.storage import Store, open_store

HOUR = 3600.0


def sync(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test body in its own event loop (as the other server tests do)."""

    @functools.wraps(test)
    def run(*args: object, **kwargs: object) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return run


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def patch_tuesday_plus(days: int, at: str = "22:00", zone: str = "UTC") -> PatchSchedule:
    return PatchSchedule(
        name="pt",
        duration_seconds=4 * HOUR,
        nth=2,
        weekday="tuesday",
        offset_days=days,
        time=at,
        time_zone=zone,
        policy="patching",
    )


def window_of(schedule: PatchSchedule, zone: str, *agents: str) -> PatchWindow:
    windows, problems = plan_windows([(agent, schedule, zone) for agent in agents])
    assert problems == []
    (window,) = windows.values()
    return window


# --- when schedules fire ------------------------------------------------------------------


def test_nth_weekday_of_a_month() -> None:
    # December 2026 starts on a Tuesday: Tuesdays are 1, 8, 15, 22, 29.
    assert nth_weekday(2026, 12, 2, 1) == 8
    assert nth_weekday(2026, 12, 5, 1) == 29
    assert nth_weekday(2026, 12, -1, 1) == 29
    # February 2027 has four Tuesdays: no fifth.
    assert nth_weekday(2027, 2, 5, 1) is None


def test_patch_tuesday_plus_three_fires_on_the_friday_after_the_second_tuesday() -> None:
    trigger = trigger_for(patch_tuesday_plus(3), "UTC")
    first = trigger.get_next_fire_time(None, utc(2026, 12, 7))
    assert first == utc(2026, 12, 11, 22, 0)
    # The next one is January's: the second Tuesday of January 2027 is the 12th.
    assert trigger.get_next_fire_time(first, first) == utc(2027, 1, 15, 22, 0)


def test_an_offset_may_carry_a_firing_into_the_next_month() -> None:
    # The last Friday of July 2027 is the 30th; + 3 days is Monday 2 August.
    schedule = PatchSchedule(
        name="late", duration_seconds=HOUR, nth=-1, weekday="friday", offset_days=3, time="01:00"
    )
    trigger = trigger_for(schedule, "UTC")
    assert trigger.get_next_fire_time(None, utc(2027, 7, 29)) == utc(2027, 8, 2, 1, 0)
    # Asked on 1 August, the firing due on the 2nd (from July's base day) is still next.
    assert trigger.get_next_fire_time(None, utc(2027, 8, 1)) == utc(2027, 8, 2, 1, 0)


def test_a_fifth_weekday_skips_months_without_one() -> None:
    schedule = PatchSchedule(
        name="fifth", duration_seconds=HOUR, nth=5, weekday="tuesday", time="03:00"
    )
    trigger = trigger_for(schedule, "UTC")
    # After December 2026 (29th), the next month with five Tuesdays is March 2027 (30th).
    assert trigger.get_next_fire_time(None, utc(2026, 12, 30)) == utc(2027, 3, 30, 3, 0)


def test_times_are_read_in_the_sites_zone_and_keep_wall_time_across_dst() -> None:
    # Europe/Berlin: UTC+1 in winter, UTC+2 from the last Sunday of March.
    trigger = trigger_for(patch_tuesday_plus(0, at="02:30", zone="site"), "Europe/Berlin")
    march = trigger.get_next_fire_time(None, utc(2027, 3, 1))
    april = trigger.get_next_fire_time(march, march)
    assert march == utc(2027, 3, 9, 1, 30)  # 02:30 CET
    assert april == utc(2027, 4, 13, 0, 30)  # 02:30 CEST
    cron = PatchSchedule(name="nightly", duration_seconds=HOUR, cron="0 2 * * *")
    new_york = trigger_for(cron, "America/New_York")
    assert new_york.get_next_fire_time(None, utc(2027, 1, 10)) == utc(2027, 1, 10, 7, 0)
    assert new_york.get_next_fire_time(None, utc(2027, 7, 10)) == utc(2027, 7, 10, 6, 0)


def test_a_schedules_own_zone_wins_over_the_sites() -> None:
    schedule = PatchSchedule(
        name="tokyo", duration_seconds=HOUR, cron="0 2 * * *", time_zone="Asia/Tokyo"
    )
    window = window_of(schedule, "Europe/Berlin", "a1")
    assert window.zone == "Asia/Tokyo"
    start = window.next_start(utc(2027, 1, 10).timestamp())
    assert start == utc(2027, 1, 10, 17, 0).timestamp()


def test_the_trigger_survives_pickling_as_a_stored_job_does() -> None:
    trigger = trigger_for(patch_tuesday_plus(3, zone="site"), "Europe/Berlin")
    copy = pickle.loads(pickle.dumps(trigger))
    assert isinstance(copy, NthWeekdayTrigger)
    now = utc(2026, 12, 1)
    assert copy.get_next_fire_time(None, now) == trigger.get_next_fire_time(None, now)
    assert str(copy) == str(trigger)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (PatchSchedule(name="x", duration_seconds=60, cron="61 * * * *"), "not a 5-field cron"),
        (PatchSchedule(name="x", duration_seconds=0, cron="0 * * * *"), "duration"),
        (
            PatchSchedule(name="x", duration_seconds=60, nth=2, weekday="tuesday", time="25:00"),
            "HH:MM",
        ),
        (PatchSchedule(name="x", duration_seconds=60, nth=6, weekday="tuesday"), "nth 6"),
        (
            PatchSchedule(name="x", duration_seconds=60, cron="0 * * * *", time_zone="Mars/Base"),
            "Mars",
        ),
    ],
)
def test_a_schedule_that_cannot_fire_is_named(schedule: PatchSchedule, message: str) -> None:
    windows, problems = plan_windows([("a1", schedule, "UTC")])
    assert windows == {}
    assert len(problems) == 1 and message in problems[0], problems
    with pytest.raises(ConfigError, match=message.split(maxsplit=1)[0]):
        trigger_for(schedule, "UTC" if schedule.time_zone == "site" else schedule.time_zone)


def test_the_open_occurrence_and_the_next_start() -> None:
    window = window_of(patch_tuesday_plus(3), "UTC", "a1")
    start = utc(2026, 12, 11, 22, 0).timestamp()
    assert window.current(start - 1) is None
    assert window.current(start) == (start, start + 4 * HOUR)
    assert window.current(start + 4 * HOUR - 1) == (start, start + 4 * HOUR)
    assert window.current(start + 4 * HOUR) is None  # the end is not inside the window
    assert window.next_start(start - 1) == start
    assert window.next_start(start) == utc(2027, 1, 15, 22, 0).timestamp()


def test_agents_sharing_a_schedule_and_zone_share_one_window() -> None:
    schedule = patch_tuesday_plus(3, zone="site")
    windows, _ = plan_windows(
        [
            ("a1", schedule, "Europe/Berlin"),
            ("a2", schedule, "Europe/Berlin"),
            ("a3", schedule, "UTC"),
        ]
    )
    assert {key: w.agent_ids for key, w in windows.items()} == {
        "patching/pt@Europe/Berlin": ("a1", "a2"),
        "patching/pt@UTC": ("a3",),
    }


# --- the job store --------------------------------------------------------------------------


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


class Opened:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def __call__(self, key: str) -> None:
        self.keys.append(key)


def every_minute(duration: float) -> PatchSchedule:
    return PatchSchedule(name="m", duration_seconds=duration, cron="* * * * *", policy="p")


async def set_next_run(scheduler: PatchScheduler, key: str, when: datetime) -> None:
    """Move a stored job's next run as if the server had been down since `when`."""
    assert scheduler.scheduler is not None
    scheduler.scheduler.pause()  # so that this scheduler does not run it itself
    scheduler.scheduler.modify_job(JOB_PREFIX + key, next_run_time=when)


async def wait_for_opened(opened: Opened, count: int) -> None:
    for _ in range(100):
        if len(opened.keys) >= count:
            return
        await asyncio.sleep(0.05)


@sync
async def test_jobs_are_stored_in_the_database_and_survive_a_restart(store: Store) -> None:
    new_year = PatchSchedule(name="m", duration_seconds=60, cron="0 0 1 1 *", policy="p")
    window = window_of(new_year, "UTC", "a1")
    first = PatchScheduler(store.engine, Opened(), instance="test-restart")
    await first.set_windows({window.key: window})
    assert first.next_run_times() == {}  # not leading: nothing scheduled from here
    await first.lead(True)
    stored = first.next_run_times()
    assert list(stored) == [window.key] and stored[window.key] is not None
    await first.lead(False)

    second = PatchScheduler(store.engine, Opened(), instance="test-restart")
    second.windows = {window.key: window}
    await second.lead(True)
    try:
        assert second.next_run_times() == stored  # the same job, not one made again
    finally:
        await second.stop()


@sync
async def test_a_start_missed_while_down_opens_once_while_the_window_is_open(store: Store) -> None:
    window = window_of(every_minute(3600), "UTC", "a1")
    down = PatchScheduler(store.engine, Opened(), instance="test-missed")
    await down.set_windows({window.key: window})
    await down.lead(True)
    # The server was down for three starts, the first 2.5 minutes ago: within the hour's window.
    await set_next_run(down, window.key, datetime.now(UTC) - timedelta(seconds=150))
    await down.stop()

    opened = Opened()
    back = PatchScheduler(store.engine, opened, instance="test-missed")
    back.windows = {window.key: window}
    await back.lead(True)
    try:
        await wait_for_opened(opened, 1)
        await asyncio.sleep(0.3)
        assert opened.keys == [window.key]  # coalesced: once, not once per missed start
        next_run = back.next_run_times()[window.key]
        assert next_run is not None and next_run > datetime.now(UTC).timestamp()
    finally:
        await back.stop()


@sync
async def test_a_start_whose_window_is_over_is_not_opened(store: Store) -> None:
    # Daily, for 30 s, from two minutes ago: today's occurrence is over.
    began = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    short = PatchSchedule(name="m", duration_seconds=30, cron=cron_of(began), policy="p")
    window = window_of(short, "UTC", "a1")
    down = PatchScheduler(store.engine, Opened(), instance="test-over")
    await down.set_windows({window.key: window})
    await down.lead(True)
    # The server was down from just before today's start until now.
    await set_next_run(down, window.key, began)
    await down.stop()

    opened = Opened()
    back = PatchScheduler(store.engine, opened, instance="test-over")
    back.windows = {window.key: window}
    await back.lead(True)
    try:
        await asyncio.sleep(1.0)
        assert opened.keys == []  # over a minute late for a 30 s window: misfired, not run
        next_run = back.next_run_times()[window.key]
        assert next_run is not None and next_run > datetime.now(UTC).timestamp() + 3600
    finally:
        await back.stop()


@sync
async def test_a_changed_schedule_replaces_its_job_and_a_removed_one_goes(store: Store) -> None:
    hourly = window_of(every_minute(3600), "UTC", "a1")
    scheduler = PatchScheduler(store.engine, Opened(), instance="test-change")
    await scheduler.set_windows({hourly.key: hourly})
    await scheduler.lead(True)
    try:
        daily = window_of(
            PatchSchedule(name="m", duration_seconds=600, cron="0 3 * * *", policy="p"), "UTC", "a1"
        )
        assert daily.key == hourly.key and daily.fingerprint != hourly.fingerprint
        await scheduler.set_windows({daily.key: daily})
        (next_run,) = scheduler.next_run_times().values()
        assert next_run is not None and datetime.fromtimestamp(next_run, UTC).hour == 3
        await scheduler.set_windows({})
        assert scheduler.next_run_times() == {}
    finally:
        await scheduler.stop()


def cron_of(when: datetime) -> str:
    """Return a daily cron firing at `when`'s minute (UTC)."""
    return f"{when.minute} {when.hour} * * *"


def started_a_minute_ago(duration: float) -> PatchSchedule:
    """A daily window whose occurrence today began one to two minutes ago."""
    began = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    cron = f"{began.minute} {began.hour} * * *"
    return PatchSchedule(name="now", duration_seconds=duration, cron=cron, policy="p")


@sync
async def test_a_new_window_that_is_open_now_opens_at_once(store: Store) -> None:
    window = window_of(started_a_minute_ago(600), "UTC", "a1")
    opened = Opened()
    scheduler = PatchScheduler(store.engine, opened, instance="test-now")
    await scheduler.set_windows({window.key: window})
    await scheduler.lead(True)
    try:
        await wait_for_opened(opened, 1)
        assert opened.keys == [window.key]
        next_run = scheduler.next_run_times()[window.key]
        assert next_run is not None and next_run > datetime.now(UTC).timestamp() + 3600
    finally:
        await scheduler.stop()


def test_site_time_zones_from_the_command_line() -> None:
    assert parse_site_zones(["acme/berlin=Europe/Berlin", "acme/ny = America/New_York"]) == {
        "acme/berlin": "Europe/Berlin",
        "acme/ny": "America/New_York",
    }
    with pytest.raises(ConfigError, match="CLIENT/SITE=ZONE"):
        parse_site_zones(["acme=Europe/Berlin"])
    with pytest.raises(ConfigError, match="'Mars/Base' is unknown"):
        parse_site_zones(["acme/hq=Mars/Base"])
